"""Dataset readers: each yields ``SourceRecord`` rows or ``Rejection`` notes, lazily."""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path

from clipsearch.datasets.readers.generic import read_generic
from clipsearch.datasets.readers.imageclef import SPLITS as IMAGECLEF_SPLITS
from clipsearch.datasets.readers.imageclef import read_imageclef
from clipsearch.datasets.readers.karpathy import read_karpathy
from clipsearch.datasets.records import ReadItem


class SourceFormat(StrEnum):
    auto = "auto"
    generic = "generic"
    rsicd = "rsicd"
    ucm = "ucm"
    sydney = "sydney"
    karpathy = "karpathy"
    imageclef = "imageclef"


KARPATHY_FORMATS = {SourceFormat.rsicd, SourceFormat.ucm, SourceFormat.sydney,
                    SourceFormat.karpathy}


def detect_format(source: Path) -> SourceFormat:
    """Guess the layout of ``source`` (a manifest/JSON file or a dataset folder)."""
    if source.is_file():
        if source.suffix.lower() in (".jsonl", ".csv"):
            return SourceFormat.generic
        if source.suffix.lower() == ".json":
            return SourceFormat.karpathy
    elif source.is_dir():
        if any((source / name).is_file() for name in ("manifest.jsonl", "manifest.csv")):
            return SourceFormat.generic
        if any((source / name).is_dir() for name in IMAGECLEF_SPLITS):
            return SourceFormat.imageclef
        if any(source.glob("*.json")):
            return SourceFormat.karpathy
    raise FileNotFoundError(f"cannot tell the dataset format of {source}; pass --format")


def read_source(source: Path, fmt: SourceFormat = SourceFormat.auto, *,
                dataset: str | None = None, images: Path | None = None,
                classes: Path | None = None) -> Iterator[ReadItem]:
    """All rows of ``source`` in its format. Raises FileNotFoundError/ValueError when the
    source itself is unusable (no manifest, not JSON); bad rows become ``Rejection`` items."""
    source = source.expanduser().resolve()
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist")
    if fmt == SourceFormat.auto:
        fmt = detect_format(source)
    if fmt == SourceFormat.generic:
        return read_generic(source, dataset=dataset)
    if fmt == SourceFormat.imageclef:
        return read_imageclef(source, dataset=dataset)
    if fmt in KARPATHY_FORMATS and dataset is None and fmt != SourceFormat.karpathy:
        dataset = fmt.value
    return read_karpathy(source, dataset=dataset, images=images, classes=classes)


__all__ = ["SourceFormat", "detect_format", "read_source"]
