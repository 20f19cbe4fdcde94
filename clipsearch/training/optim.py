"""The optimiser and learning-rate schedule every trainer here uses: AdamW without weight
decay on biases and norms, linear warm-up then cosine decay to zero."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def adamw(params: Sequence[torch.nn.Parameter], *, lr: float,
          weight_decay: float) -> torch.optim.AdamW:
    """Weight decay on matrices only (``ndim >= 2``), not on biases, norms or scales."""
    return torch.optim.AdamW(
        [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
         {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}], lr=lr)


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """The learning-rate factor at ``step``: linear to 1 over ``warmup`` steps, then cosine
    decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * progress))
