"""RSICD, UCM and Sydney captions: one Karpathy-style JSON file.

``{"images": [{"filename", "imgid", "split", "sentences": [{"raw", "tokens"}]}]}``. Categories
come from ``txtclasses_*/<category>.txt`` lists of file names when present (RSICD), else from the
file name's prefix (``airport_12.jpg`` -> ``airport``); numeric names without a list get none.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clipsearch.datasets.readers.text import decode_text
from clipsearch.datasets.records import Action, ReadItem, Reason, Rejection, SourceRecord

IMAGE_DIR_NAMES = ("RSICD_images", "images", "imgs", "Images", "image")
_PREFIX = re.compile(r"^([A-Za-z][A-Za-z_ -]*?)[_ -]*\d+$")


def find_json(source: Path) -> Path:
    if source.is_file():
        return source
    found = sorted(source.glob("dataset_*.json")) or sorted(source.glob("*.json"))
    if not found:
        raise FileNotFoundError(f"no dataset_*.json in {source}")
    return found[0]


def find_image_dir(base: Path, images: Path | None) -> Path:
    if images is not None:
        return images
    for name in IMAGE_DIR_NAMES:
        if (base / name).is_dir():
            return base / name
    return base


def find_class_dir(base: Path, classes: Path | None) -> Path | None:
    if classes is not None:
        return classes
    found = sorted(p for p in base.glob("txtclasses*") if p.is_dir())
    return found[0] if found else None


def load_class_lists(class_dir: Path | None) -> tuple[dict[str, str], list[Rejection]]:
    """file name (and stem) -> category, from ``<category>.txt`` files of names."""
    mapping: dict[str, str] = {}
    notes: list[Rejection] = []
    if class_dir is None:
        return mapping, notes
    for txt in sorted(class_dir.glob("*.txt")):
        text, repaired = decode_text(txt.read_bytes())
        if repaired:
            notes.append(Rejection(file=str(txt), reason=Reason.non_utf8, action=Action.repaired,
                                   detail="class list decoded as cp1252/latin-1"))
        for line in text.splitlines():
            name = line.strip()
            if name:
                mapping.setdefault(name, txt.stem)
                mapping.setdefault(Path(name).stem, txt.stem)
    return mapping, notes


def category_from_name(filename: str) -> str | None:
    match = _PREFIX.match(Path(filename).stem)
    return match.group(1).strip("_ -") if match else None


def read_karpathy(source: Path, *, dataset: str | None = None, images: Path | None = None,
                  classes: Path | None = None) -> Iterator[ReadItem]:
    path = find_json(source)
    base = path.parent
    text, repaired = decode_text(path.read_bytes())
    if repaired:
        yield Rejection(file=str(path), reason=Reason.non_utf8, action=Action.repaired,
                        detail="captions file decoded as cp1252/latin-1")
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(body, dict) or not isinstance(body.get("images"), list):
        raise ValueError(f"{path} has no 'images' list (Karpathy format expected)")
    name = dataset or _dataset_name(body, path)
    image_dir = find_image_dir(base, images)
    class_map, notes = load_class_lists(find_class_dir(base, classes))
    yield from notes
    for number, item in enumerate(body["images"]):
        yield _to_record(item, number, name, image_dir, class_map, path)


def _dataset_name(body: dict[str, Any], path: Path) -> str:
    declared = body.get("dataset")
    if isinstance(declared, str) and declared.strip():
        return declared.strip()
    stem = path.stem
    return stem.removeprefix("dataset_") or stem


def _to_record(item: Any, number: int, dataset: str, image_dir: Path,
               class_map: dict[str, str], path: Path) -> ReadItem:
    where = f"{path}#images[{number}]"
    if not isinstance(item, dict) or not isinstance(item.get("filename"), str):
        return Rejection(file=where, reason=Reason.invalid_row, detail="entry has no 'filename'")
    filename: str = item["filename"].strip()
    captions = [_sentence(s) for s in item.get("sentences") or [] if isinstance(s, dict)]
    category = (class_map.get(filename) or class_map.get(Path(filename).stem)
                or _opt(item.get("category")) or category_from_name(filename))
    try:
        return SourceRecord(source_id=Path(filename).stem or filename,
                            file=image_dir / str(item.get("filepath") or "") / filename,
                            captions=captions, dataset=dataset, category=category,
                            split=_opt(item.get("split")))
    except ValueError as exc:
        return Rejection(id=filename, file=where, reason=Reason.invalid_row, detail=str(exc))


def _sentence(sentence: dict[str, Any]) -> str:
    raw = sentence.get("raw")
    if isinstance(raw, str) and raw.strip():
        return raw
    tokens = sentence.get("tokens")
    return " ".join(str(t) for t in tokens) if isinstance(tokens, list) else ""


def _opt(value: object) -> str | None:
    if value is None:
        return None
    return str(value).strip() or None
