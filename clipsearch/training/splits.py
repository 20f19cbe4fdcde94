"""Which images train and which are held out, shared by fine-tuning and distillation."""

from __future__ import annotations

import random
from collections.abc import Sequence

from clipsearch.evaluation.data import LabelledImage

VAL_SPLITS = ("val", "validation", "valid")
TEST_SPLITS = ("test",)


def seeded_holdout(items: Sequence[LabelledImage], *, fraction: float,
                   seed: int) -> tuple[list[LabelledImage], list[LabelledImage]]:
    """(held out, rest): a seeded share of ``items`` (at least 2), for data without a val
    split."""
    shuffled = list(items)
    random.Random(seed).shuffle(shuffled)
    n_held = max(2, round(len(shuffled) * fraction))
    return shuffled[:n_held], shuffled[n_held:]
