"""Training images turned into pixel batches (optionally augmented), for every trainer.

Small sets are decoded once and kept in memory (``cache=True``, what fine-tuning does); large
ones are decoded per batch (``cache=False``: memory stays flat whatever the set's size, at the
cost of decoding every epoch). ``skip_bad=True`` leaves out files that do not decode instead
of failing, and says which (``skipped``); indices then refer to ``items``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from clipsearch.evaluation.data import LabelledImage
from clipsearch.models.preprocess import PreprocessSpec, preprocess
from clipsearch.training.augment import AugmentConfig, augment

DECODE_ERRORS = (OSError, ValueError, Image.DecompressionBombError)


def open_rgb(path: Path) -> Image.Image:
    with Image.open(path) as img:
        img.load()
        return img.convert("RGB")


class PixelSet:
    """``items``' images as float32 (n, 3, H, W) batches in the model's preprocessing."""

    def __init__(self, items: Sequence[LabelledImage], spec: PreprocessSpec, *,
                 cache: bool = True, skip_bad: bool = False) -> None:
        self._spec = spec
        self.items: list[LabelledImage] = []
        self.skipped: list[tuple[str, str]] = []  # (id, reason)
        self._images: list[Image.Image] | None = [] if cache else None
        for it in items:
            if not (cache or skip_bad):
                self.items.append(it)
                continue
            try:
                img = open_rgb(it.path)
            except DECODE_ERRORS as exc:
                if not skip_bad:
                    raise
                self.skipped.append((it.id, str(exc)))
                continue
            self.items.append(it)
            if self._images is not None:
                self._images.append(img)

    def __len__(self) -> int:
        return len(self.items)

    def image(self, i: int) -> Image.Image:
        return self._images[i] if self._images is not None else open_rgb(self.items[i].path)

    def batch(self, idx: Sequence[int], rng: np.random.Generator | None,
              cfg: AugmentConfig) -> torch.Tensor:
        """Pixels of images ``idx``; one random view each when ``rng`` is given."""
        out_hw = self._spec.output_size
        arrays = []
        for i in idx:
            img = self.image(i)
            if rng is not None:
                img = augment(img, rng, cfg, out_hw)
            arrays.append(preprocess(img, self._spec))
        return torch.from_numpy(np.stack(arrays))
