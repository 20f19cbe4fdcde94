"""The one small interface every inference runtime implements."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Runtime(Protocol):
    """Runs CLIP's two towers. Outputs are projected, NOT normalised, float32 (n, dim).

    ``input_ids`` / ``attention_mask`` are int64 (n, L) with L the batch's longest sequence;
    ``pixels`` is float32 (n, 3, H, W) from ``preprocess``. Implementations are not
    thread-safe: the caller runs one call at a time.
    """

    @property
    def name(self) -> str: ...

    @property
    def dtype(self) -> str: ...

    @property
    def device(self) -> str: ...

    def text(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray: ...

    def image(self, pixels: np.ndarray) -> np.ndarray: ...
