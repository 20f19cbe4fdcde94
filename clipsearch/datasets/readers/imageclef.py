"""ImageCLEF 2017 caption task: ``<root>/{training,validation,test}/`` each with a folder of
``<image_id>.jpg`` and a ``*-Captions.csv`` file of ``image_id<TAB>caption`` lines.

A split without a captions file (the test set was released without them) yields its images
with no captions.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from clipsearch.datasets.readers.text import decode_text
from clipsearch.datasets.records import Action, ReadItem, Reason, Rejection, SourceRecord

SPLITS = {"training": "train", "validation": "val", "test": "test"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp"}


def read_imageclef(source: Path, *, dataset: str | None = None) -> Iterator[ReadItem]:
    name = dataset or "imageclef2017"
    present = [(folder, split) for folder, split in SPLITS.items() if (source / folder).is_dir()]
    if not present:
        raise FileNotFoundError(f"{source} has none of the folders {', '.join(SPLITS)}")
    for folder, split in present:
        yield from _read_split(source / folder, split, name)


def _image_map(split_dir: Path) -> dict[str, Path]:
    images: dict[str, Path] = {}
    for path in sorted(split_dir.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            images.setdefault(path.stem, path)
    return images


def _read_split(split_dir: Path, split: str, dataset: str) -> Iterator[ReadItem]:
    images = _image_map(split_dir)
    caption_files = sorted(split_dir.glob("*Captions*.csv")) or sorted(
        split_dir.glob("*/*Captions*.csv"))
    if not caption_files:
        for stem, path in images.items():
            yield SourceRecord(source_id=stem, file=path, dataset=dataset, split=split)
        return
    default_dir = next((p.parent for p in images.values()), split_dir)
    for csv_path in caption_files:
        for number, raw in enumerate(csv_path.read_bytes().splitlines(), start=1):
            where = f"{csv_path}:{number}"
            line, repaired = decode_text(raw)
            if not line.strip():
                continue
            image_id, sep, caption = line.partition("\t")
            image_id = image_id.strip()
            if repaired:
                yield Rejection(id=image_id, file=where, reason=Reason.non_utf8,
                                action=Action.repaired, detail="decoded as cp1252/latin-1")
            if not sep or not image_id:
                yield Rejection(id=image_id, file=where, reason=Reason.invalid_row,
                                detail="expected 'image_id<TAB>caption'")
                continue
            file = images.get(image_id) or images.get(Path(image_id).stem) or (
                default_dir / f"{image_id}.jpg")
            yield SourceRecord(source_id=image_id, file=file, captions=[caption],
                               dataset=dataset, split=split)
