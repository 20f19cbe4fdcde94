"""What a distillation learns from: images (labels optional) split into train and held-out,
and the texts each image contributes to the image-text term.

Distillation needs no labels: every image outside the test split counts. Held out: the val
split when the data has one, else a seeded share of the rest. Texts: one of the image's
captions (drawn per step), else its category as a prompt, else none.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from clipsearch.errors import InvalidRequest
from clipsearch.evaluation.data import LabelledImage, load_labelled
from clipsearch.evaluation.zeroshot import DEFAULT_TEMPLATES, category_phrase
from clipsearch.training.splits import TEST_SPLITS, VAL_SPLITS, seeded_holdout


class NoImages(InvalidRequest):
    reason = "no_images"


def load_images(source: Path, *, fmt: str = "auto",
                dataset: str | None = None) -> list[LabelledImage]:
    items = load_labelled(Path(source), fmt=fmt, dataset=dataset)
    if not items:
        raise NoImages(f"dataset {source} has no readable images to distil on")
    return items


def split_held_out(items: Sequence[LabelledImage], *, val_fraction: float, seed: int,
                   max_held_out: int) -> tuple[list[LabelledImage], list[LabelledImage]]:
    usable = [it for it in items if it.split not in TEST_SPLITS]
    held = [it for it in usable if it.split in VAL_SPLITS]
    train = [it for it in usable if it.split not in VAL_SPLITS]
    if not held:
        held, train = seeded_holdout(train, fraction=val_fraction, seed=seed)
    if len(train) < 2 or len(held) < 2:
        raise NoImages(f"too few images to distil: {len(train)} train and {len(held)} "
                       "held-out outside the test split (need at least 2 of each)")
    if len(held) > max_held_out:
        held = random.Random(seed).sample(held, max_held_out)
    return train, held


def prompt(category: str) -> str:
    return DEFAULT_TEMPLATES[0].format(category=category_phrase(category))


def text_for(item: LabelledImage, rng: random.Random) -> str | None:
    if item.captions:
        return rng.choice(item.captions)
    if item.category:
        return prompt(item.category)
    return None
