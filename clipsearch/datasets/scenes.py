"""The demo dataset: procedurally drawn aerial-looking scenes with templated captions.

Eight categories differ in colour, texture and shape (water waves, forest crowns, striped
fields, roads, building blocks, runways, beaches, dunes). Each image gets several captions
written from templates with synonyms, omitted words, typos and mentions of neighbouring land
use. Two kinds of hard case make the search modes differ, as on real data:

* ``visual``: no caption names the category or a synonym ("a green and dark area seen from
  above"), so only the picture (vector search) can find the image by its category;
* ``verbal``: the scene is hidden under clouds or haze, so only the captions (lexical search)
  can find it.

Everything is drawn from ``(seed, index)``: the same arguments give the same files everywhere,
and any subset can be regenerated alone. A few thousand 96-px images take well under a minute.
The tests' small sample set (``clipsearch.datasets.sample``) is a configuration of this same
generator: fewer categories and images, no hard cases, splits by position.
The output is the generic format the feeder reads: ``images/`` plus ``manifest.jsonl`` (``id,
file, captions, dataset, category, split``); ``scenes.jsonl`` adds each image's ``kind``.

Opt-in attribute for query steering: with ``text_label_fraction > 0`` that share of images
carries a drawn text label (a white rectangle with black letters, like a sign or a map
annotation) and every manifest row gets ``labels``: ``["text_label"]`` or ``[]``. The label
is decided and drawn from its own random stream, so the scenes and captions stay the same as
without it, and with the default 0.0 the output is byte-for-byte unchanged.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from pydantic import BaseModel, Field

RGB = tuple[int, int, int]
TEXT_LABEL = "text_label"


class SceneKind(StrEnum):
    typical = "typical"
    visual = "visual"  # findable only by the picture
    verbal = "verbal"  # findable only by the words


class Category(BaseModel):
    name: str
    synonyms: list[str]
    features: list[str] = Field(description="phrases that describe the scene without naming it")


CATEGORIES: list[Category] = [
    Category(name="water", synonyms=["lake", "river", "water", "pond", "reservoir", "sea"],
             features=["rippled blue surface", "calm dark blue area", "small waves"]),
    Category(name="forest", synonyms=["forest", "woods", "woodland", "trees"],
             features=["dense green canopy", "many round dark green crowns", "shady green area"]),
    Category(name="farmland", synonyms=["farmland", "fields", "crops", "cropland", "farm"],
             features=["parallel strips of yellow and green", "neat parcels in rows",
                       "patchwork of rectangles"]),
    Category(name="road", synonyms=["road", "highway", "street", "motorway"],
             features=["long grey band with a dashed line", "a dark strip crossing the scene",
                       "lanes with white marks"]),
    Category(name="residential", synonyms=["houses", "buildings", "residential area",
                                           "neighbourhood", "homes"],
             features=["many small red and grey roofs", "blocks arranged in a grid",
                       "tiny rectangles close together"]),
    Category(name="airport", synonyms=["airport", "runway", "airstrip", "airfield"],
             features=["a very long light strip with white stripes", "planes parked on tarmac",
                       "wide pale pavement with markings"]),
    Category(name="beach", synonyms=["beach", "coast", "shore", "seaside"],
             features=["sand meeting blue waves", "a pale strip next to the blue",
                       "where yellow turns into blue"]),
    Category(name="desert", synonyms=["desert", "dunes", "sand dunes", "barren land"],
             features=["curved orange ridges", "dry yellow wavy ground", "bare sandy ripples"]),
]
CATEGORY_NAMES = [c.name for c in CATEGORIES]

_SIZES = ["large", "small", "wide", "narrow", "big", "tiny", "long"]
_VIEWS = ["seen from above", "in an aerial image", "from a satellite", "viewed from the air",
          "in this remote sensing picture", ""]
_TEMPLATES = [
    "a {adj} {noun} {view}",
    "there is a {noun} {view}",
    "{view} we can see a {adj} {noun}",
    "a {noun} with {feature}",
    "many {feature} around the {noun}",
    "this picture shows a {noun} near a {other}",
    "{noun}",
]
_VISUAL_TEMPLATES = [
    "an area with {feature} {view}",
    "{feature} {view}",
    "a scene of {feature}",
    "it looks like {feature}",
    "nothing special, just {feature}",
]


class DemoRecord(BaseModel):
    id: str
    file: str
    captions: list[str]
    dataset: str
    category: str
    split: str
    labels: list[str] | None = None  # only with text_label_fraction > 0


class DemoScene(BaseModel):
    id: str
    category: str
    kind: SceneKind


class DemoDataset(BaseModel):
    root: Path
    manifest: Path
    records: list[DemoRecord]
    scenes: list[DemoScene]

    @property
    def categories(self) -> list[str]:
        return sorted({r.category for r in self.records})


# --------------------------------------------------------------------------- drawing


def _jitter(rng: random.Random, colour: RGB, amount: int = 18) -> RGB:
    r, g, b = (max(0, min(255, c + rng.randint(-amount, amount))) for c in colour)
    return (r, g, b)


def _water(d: ImageDraw.ImageDraw, rng: random.Random, s: int) -> RGB:
    fg = _jitter(rng, (70, 130, 210))
    step = rng.randint(7, 12)
    for y in range(rng.randint(0, step), s, step):
        x0 = rng.randint(-10, 0)
        d.arc((x0, y, x0 + s // 2, y + step), 0, 180, fill=fg, width=2)
        d.arc((x0 + s // 2, y, x0 + s + 10, y + step), 0, 180, fill=fg, width=2)
    return fg


def _forest(d: ImageDraw.ImageDraw, rng: random.Random, s: int) -> RGB:
    fg = _jitter(rng, (10, 60, 20))
    for _ in range(rng.randint(40, 70)):
        x, y, r = rng.randint(0, s), rng.randint(0, s), rng.randint(3, 8)
        d.ellipse((x - r, y - r, x + r, y + r), fill=_jitter(rng, fg, 12))
    return fg


def _farmland(d: ImageDraw.ImageDraw, rng: random.Random, s: int) -> RGB:
    cols = [(200, 180, 60), (120, 160, 50), (170, 140, 70)]
    cell = rng.randint(s // 4, s // 2)
    for gx in range(0, s, cell):
        for gy in range(0, s, cell):
            colour = _jitter(rng, rng.choice(cols), 10)
            d.rectangle((gx, gy, gx + cell, gy + cell), fill=colour)
            dark = tuple(int(c * 0.75) for c in colour)
            if rng.random() < 0.5:
                for x in range(gx, gx + cell, 5):
                    d.line((x, gy, x, gy + cell), fill=dark, width=1)  # type: ignore[arg-type]
            else:
                for y in range(gy, gy + cell, 5):
                    d.line((gx, y, gx + cell, y), fill=dark, width=1)  # type: ignore[arg-type]
    return cols[0]


def _road(d: ImageDraw.ImageDraw, rng: random.Random, s: int) -> RGB:
    fg = _jitter(rng, (70, 70, 75), 8)
    w = rng.randint(s // 8, s // 5)
    y = rng.randint(w, s - 2 * w)
    d.rectangle((0, y, s, y + w), fill=fg)
    for x in range(rng.randint(0, 8), s, 12):
        d.line((x, y + w // 2, x + 6, y + w // 2), fill=(235, 235, 235), width=1)
    if rng.random() < 0.5:  # a crossing road
        x = rng.randint(w, s - 2 * w)
        d.rectangle((x, 0, x + w, s), fill=fg)
    return fg


def _residential(d: ImageDraw.ImageDraw, rng: random.Random, s: int) -> RGB:
    roofs = [(170, 60, 50), (120, 120, 130), (190, 90, 60)]
    step = rng.randint(12, 16)
    for gx in range(2, s - 6, step):
        for gy in range(2, s - 6, step):
            if rng.random() < 0.85:
                w, h = rng.randint(6, step - 3), rng.randint(6, step - 3)
                d.rectangle((gx, gy, gx + w, gy + h), fill=_jitter(rng, rng.choice(roofs), 15))
    return roofs[0]


def _airport(d: ImageDraw.ImageDraw, rng: random.Random, s: int) -> RGB:
    fg = _jitter(rng, (200, 200, 200), 10)
    h = rng.randint(s // 6, s // 4)
    y = rng.randint(s // 4, s // 2)
    d.rectangle((0, y, s, y + h), fill=fg)
    for x in range(4, s, 10):
        d.rectangle((x, y + h // 2 - 1, x + 5, y + h // 2 + 1), fill=(255, 255, 255))
    for _ in range(rng.randint(1, 3)):  # planes: a fuselage and wings
        px, py = rng.randint(8, s - 8), rng.randint(y + h + 6, s - 4) if y + h + 10 < s else 6
        d.line((px - 6, py, px + 6, py), fill=(250, 250, 250), width=2)
        d.line((px, py - 5, px, py + 5), fill=(250, 250, 250), width=2)
    return fg


def _beach(d: ImageDraw.ImageDraw, rng: random.Random, s: int) -> RGB:
    sea = _jitter(rng, (40, 110, 190))
    a, b = rng.randint(s // 4, 3 * s // 4), rng.randint(s // 4, 3 * s // 4)
    d.polygon([(0, a), (s, b), (s, s), (0, s)], fill=sea)
    for k in range(1, 4):
        d.line((0, a + 3 * k, s, b + 3 * k), fill=(235, 240, 250), width=1)
    return sea


def _desert(d: ImageDraw.ImageDraw, rng: random.Random, s: int) -> RGB:
    fg = _jitter(rng, (190, 130, 60))
    step = rng.randint(9, 14)
    for y in range(-step, s + step, step):
        d.arc((-s // 3, y, s // 2, y + 2 * step), 200, 340, fill=fg, width=3)
        d.arc((s // 3, y + step // 2, s + s // 3, y + 2 * step), 200, 340, fill=fg, width=3)
    return fg


_BACKGROUNDS: dict[str, RGB] = {
    "water": (30, 80, 170), "forest": (30, 100, 40), "farmland": (160, 150, 70),
    "road": (110, 130, 90), "residential": (185, 180, 165), "airport": (120, 125, 120),
    "beach": (225, 205, 150), "desert": (225, 180, 110),
}
_PAINTERS: dict[str, Callable[[ImageDraw.ImageDraw, random.Random, int], RGB]] = {
    "water": _water, "forest": _forest, "farmland": _farmland, "road": _road,
    "residential": _residential, "airport": _airport, "beach": _beach, "desert": _desert,
}


def _cloud_cover(img: Image.Image, rng: random.Random) -> Image.Image:
    """Hide most of the scene under white cloud or grey haze (the ``verbal`` kind)."""
    s = img.width
    cloud = Image.new("L", (s, s), 0)
    d = ImageDraw.Draw(cloud)
    for _ in range(rng.randint(10, 16)):
        x, y, r = rng.randint(0, s), rng.randint(0, s), rng.randint(s // 5, s // 2)
        d.ellipse((x - r, y - r, x + r, y + r), fill=rng.randint(215, 250))
    cloud = cloud.filter(ImageFilter.GaussianBlur(s / 16))
    grey = rng.randint(200, 240)
    haze = Image.new("RGB", (s, s), (grey, grey, grey + rng.randint(0, 10) if grey < 245 else 250))
    mask = cloud.point(lambda v: max(v, 200))  # at least ~80 % opaque everywhere
    return Image.composite(haze, img, mask)


def draw_scene(category: str, kind: SceneKind, rng: random.Random, size: int) -> Image.Image:
    img = Image.new("RGB", (size, size), _jitter(rng, _BACKGROUNDS[category]))
    _PAINTERS[category](ImageDraw.Draw(img), rng, size)
    img = img.transpose(rng.choice([Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180,
                                    Image.Transpose.ROTATE_270, Image.Transpose.FLIP_LEFT_RIGHT,
                                    Image.Transpose.TRANSPOSE]))
    if kind == SceneKind.verbal:
        img = _cloud_cover(img, rng)
    noise = np.random.default_rng(rng.getrandbits(32)).normal(0, 6, (size, size, 3))
    arr = np.clip(np.asarray(img, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


_LABEL_WORDS = ["HOTEL", "PARK", "EXIT", "SALE", "MAP", "A12", "ZONE", "GATE", "N 45", "B7",
                "FARM", "LOT 3", "PIER", "DEPOT"]


def draw_text_label(img: Image.Image, rng: random.Random) -> Image.Image:
    """A white rectangle with black letters at a random place (the ``text_label`` attribute)."""
    s = img.width
    w = rng.randint(int(s * 0.45), int(s * 0.65))
    h = rng.randint(int(s * 0.16), int(s * 0.24))
    x, y = rng.randint(1, s - w - 1), rng.randint(1, s - h - 1)
    out = img.copy()
    d = ImageDraw.Draw(out)
    d.rectangle((x, y, x + w, y + h), fill=_jitter(rng, (245, 245, 240), 8), outline=(20, 20, 20))
    font = ImageFont.load_default(size=max(6, int(h * 0.75)))
    d.text((x + w // 2, y + h // 2), rng.choice(_LABEL_WORDS), fill=(10, 10, 10), font=font,
           anchor="mm")
    return out


# --------------------------------------------------------------------------- captions


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 4:
        return word
    i = rng.randint(1, len(word) - 2)
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


def _noisy(text: str, rng: random.Random) -> str:
    words = text.split()
    if rng.random() < 0.08 and words:  # a typo
        j = rng.randrange(len(words))
        words[j] = _typo(words[j], rng)
    if rng.random() < 0.05 and len(words) > 3:  # a dropped word
        del words[rng.randrange(len(words))]
    return " ".join(words)


def write_captions(category: Category, kind: SceneKind, rng: random.Random,
                   n: int) -> list[str]:
    others = [c for c in CATEGORIES if c.name != category.name]
    captions: list[str] = []
    for _ in range(n):
        other = rng.choice(others)
        fill = {"adj": rng.choice(_SIZES), "view": rng.choice(_VIEWS),
                "feature": rng.choice(category.features),
                "other": rng.choice(other.synonyms), "noun": rng.choice(category.synonyms)}
        if kind == SceneKind.visual:
            template = rng.choice(_VISUAL_TEMPLATES)
        else:
            template = rng.choice(_TEMPLATES)
        text = " ".join(template.format(**fill).split())
        captions.append(_noisy(text, rng))
    return captions


# --------------------------------------------------------------------------- dataset


def _split_of(u: float, val_fraction: float, test_fraction: float) -> str:
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def _kind(rng: random.Random, hard_fraction: float) -> SceneKind:
    u = rng.random()
    if u < hard_fraction / 2:
        return SceneKind.visual
    if u < hard_fraction:
        return SceneKind.verbal
    return SceneKind.typical


def make_demo_dataset(
    out_dir: Path,
    *,
    n_per_category: int = 300,
    seed: int = 0,
    image_size: int = 96,
    dataset: str = "demo",
    captions_per_image: int = 5,
    hard_fraction: float = 0.3,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    categories: list[str] | None = None,
    text_label_fraction: float = 0.0,
    splits_by_position: bool = False,
) -> DemoDataset:
    """Draw ``n_per_category`` scenes per category into ``out_dir`` (generic format).

    ``text_label_fraction``: share of images that carry a drawn text label (opt-in; see the
    module docstring). ``splits_by_position``: an image's split follows its position within its
    category instead of a random draw, so every category gets exactly its share of test and
    validation images even in a tiny set (the scenes themselves are the same either way).
    """
    if n_per_category < 1 or captions_per_image < 1 or image_size < 16:
        raise ValueError("n_per_category and captions_per_image must be >= 1, image_size >= 16")
    if not 0.0 <= text_label_fraction <= 1.0:
        raise ValueError("text_label_fraction must be in [0, 1]")
    chosen = [c for c in CATEGORIES if categories is None or c.name in categories]
    if categories is not None and len(chosen) != len(set(categories)):
        unknown = sorted(set(categories) - set(CATEGORY_NAMES))
        raise ValueError(f"unknown demo categories {unknown}; known: {CATEGORY_NAMES}")
    out_dir = Path(out_dir)
    images = out_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    records: list[DemoRecord] = []
    scenes: list[DemoScene] = []
    for c_index, category in enumerate(chosen):
        for i in range(n_per_category):
            rng = random.Random(f"{seed}:{category.name}:{i}:{c_index}")
            kind = _kind(rng, hard_fraction)
            u = rng.random()  # drawn either way, so the scene stays the same
            if splits_by_position:
                u = (i + 0.5) / n_per_category
            split = _split_of(u, val_fraction, test_fraction)
            name = f"{category.name}_{i:04d}"
            img = draw_scene(category.name, kind, rng, image_size)
            labels: list[str] | None = None
            if text_label_fraction > 0:
                label_rng = random.Random(f"{seed}:{category.name}:{i}:{c_index}:label")
                labelled = label_rng.random() < text_label_fraction
                labels = [TEXT_LABEL] if labelled else []
                if labelled:
                    img = draw_text_label(img, label_rng)
            img.save(images / f"{name}.png")
            records.append(DemoRecord(
                id=name, file=f"images/{name}.png", dataset=dataset, category=category.name,
                split=split, captions=write_captions(category, kind, rng, captions_per_image),
                labels=labels))
            scenes.append(DemoScene(id=name, category=category.name, kind=kind))
    manifest = out_dir / "manifest.jsonl"
    manifest.write_text(
        "".join(json.dumps(r.model_dump(exclude_none=True)) + "\n" for r in records))
    (out_dir / "scenes.jsonl").write_text(
        "".join(json.dumps(s.model_dump(mode="json")) + "\n" for s in scenes))
    return DemoDataset(root=out_dir, manifest=manifest, records=records, scenes=scenes)
