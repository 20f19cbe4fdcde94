"""A small generated image set in the generic format (folder of images + JSONL manifest).

Used by the tests and by ``make demo`` when no dataset is configured. Every image is drawn
with PIL from a seed, so the set is identical on every machine.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image, ImageDraw
from pydantic import BaseModel

# category -> (background colour, shape colour, shape, caption nouns)
_CATEGORIES: dict[str, tuple[tuple[int, int, int], tuple[int, int, int], str, list[str]]] = {
    "water": ((30, 80, 180), (20, 50, 140), "waves", ["lake", "river", "sea"]),
    "forest": ((20, 110, 40), (10, 70, 20), "dots", ["forest", "woodland", "trees"]),
    "field": ((200, 180, 60), (150, 130, 40), "stripes", ["farmland", "field", "meadow"]),
    "runway": ((120, 120, 120), (240, 240, 240), "bar", ["runway", "airport", "airstrip"]),
    "buildings": ((170, 90, 70), (90, 40, 30), "blocks", ["buildings", "houses", "town"]),
}
_ADJECTIVES = ["large", "small", "quiet", "busy", "wide", "narrow"]


class SampleRecord(BaseModel):
    id: str
    file: str
    captions: list[str]
    dataset: str
    category: str
    split: str


class SampleDataset(BaseModel):
    root: Path
    manifest: Path
    records: list[SampleRecord]

    @property
    def categories(self) -> list[str]:
        return sorted({r.category for r in self.records})


def _draw(category: str, rng: random.Random, size: int) -> Image.Image:
    bg, fg, shape, _ = _CATEGORIES[category]
    jitter = tuple(max(0, min(255, c + rng.randint(-15, 15))) for c in bg)
    img = Image.new("RGB", (size, size), jitter)  # type: ignore[arg-type]
    d = ImageDraw.Draw(img)
    if shape == "waves":
        for y in range(rng.randint(0, 8), size, 12):
            d.arc((0, y, size, y + 10), 0, 180, fill=fg, width=2)
    elif shape == "dots":
        for _ in range(40):
            x, y, r = rng.randint(0, size), rng.randint(0, size), rng.randint(3, 8)
            d.ellipse((x - r, y - r, x + r, y + r), fill=fg)
    elif shape == "stripes":
        for x in range(rng.randint(0, 10), size, 14):
            d.rectangle((x, 0, x + 5, size), fill=fg)
    elif shape == "bar":
        y = rng.randint(size // 3, size // 2)
        d.rectangle((0, y, size, y + size // 6), fill=fg)
    else:
        for _ in range(8):
            x, y = rng.randint(0, size - 20), rng.randint(0, size - 20)
            d.rectangle((x, y, x + rng.randint(10, 20), y + rng.randint(10, 20)), fill=fg)
    return img


def make_sample_dataset(
    out_dir: Path,
    *,
    n_per_category: int = 4,
    seed: int = 0,
    image_size: int = 64,
    dataset: str = "sample",
) -> SampleDataset:
    """Write ``n_per_category`` images per category and ``manifest.jsonl`` under ``out_dir``."""
    rng = random.Random(seed)
    out_dir = Path(out_dir)
    images = out_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    records: list[SampleRecord] = []
    for category, (_, _, _, nouns) in _CATEGORIES.items():
        for i in range(n_per_category):
            name = f"{category}_{i:03d}"
            _draw(category, rng, image_size).save(images / f"{name}.png")
            noun = nouns[i % len(nouns)]
            captions = [
                f"a {rng.choice(_ADJECTIVES)} {noun} seen from above",
                f"aerial view of a {noun} number {i}",
            ]
            split = "test" if i % 4 == 3 else "train"
            records.append(SampleRecord(id=name, file=f"images/{name}.png", captions=captions,
                                        dataset=dataset, category=category, split=split))
    manifest = out_dir / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r.model_dump()) + "\n" for r in records))
    return SampleDataset(root=out_dir, manifest=manifest, records=records)
