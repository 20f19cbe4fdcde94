"""The tests' small sample set: a small configuration of the demo scene generator.

Five of the demo's categories, four 64-px images each, two captions per image, no hard cases
(every caption names its scene), one test image per category (splits by position). Drawing and
captions are ``clipsearch.datasets.scenes``'s own, so the sample and the demo never drift apart.
Tests read the words they search for from the generated records, not from this module.
"""

from __future__ import annotations

from pathlib import Path

from clipsearch.datasets.scenes import DemoDataset, make_demo_dataset

SAMPLE_CATEGORIES = ["water", "forest", "farmland", "residential", "airport"]


def make_sample_dataset(
    out_dir: Path,
    *,
    n_per_category: int = 4,
    seed: int = 0,
    image_size: int = 64,
    dataset: str = "sample",
) -> DemoDataset:
    """Write ``n_per_category`` images per sample category and ``manifest.jsonl`` under
    ``out_dir`` (the generic format the feeder reads)."""
    return make_demo_dataset(
        out_dir, n_per_category=n_per_category, seed=seed, image_size=image_size,
        dataset=dataset, categories=SAMPLE_CATEGORIES, captions_per_image=2, hard_fraction=0.0,
        val_fraction=0.0, test_fraction=0.25, splits_by_position=True)
