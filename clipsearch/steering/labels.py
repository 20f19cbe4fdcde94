"""Labelled image sets for a probe: two folders, or a labels file.

Labels file (JSONL or CSV with a header): one row per image with ``file`` (relative to the
file's folder, or absolute) and either ``label`` (true/false, 1/0, yes/no) or ``labels`` (a
list of label names; the image is positive when it lists the attribute). The demo dataset's
``manifest.jsonl`` made with ``text_label_fraction > 0`` is such a file (attribute
``text_label``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from clipsearch.errors import InvalidRequest

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f", ""}


class LabelledImage(BaseModel):
    model_config = ConfigDict(frozen=True)

    path: Path
    positive: bool


def from_folders(positives: Path, negatives: Path) -> list[LabelledImage]:
    return ([LabelledImage(path=p, positive=True) for p in _images_in(positives)]
            + [LabelledImage(path=p, positive=False) for p in _images_in(negatives)])


def _images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise InvalidRequest(f"{folder} is not a folder", reason="invalid_probe_data")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def from_labels_file(path: Path, attribute: str) -> list[LabelledImage]:
    if not path.is_file():
        raise InvalidRequest(f"labels file {path} does not exist", reason="invalid_probe_data")
    text = path.read_text(encoding="utf-8")
    rows = _csv_rows(text) if path.suffix.lower() == ".csv" else _jsonl_rows(text, path)
    base = path.parent
    out: list[LabelledImage] = []
    for line, row in rows:
        file = row.get("file")
        if not isinstance(file, str) or not file:
            raise InvalidRequest(f"{path}:{line}: row has no 'file'", reason="invalid_probe_data")
        full = Path(file) if Path(file).is_absolute() else base / file
        out.append(LabelledImage(path=full, positive=_positive(row, attribute, f"{path}:{line}")))
    return out


def _jsonl_rows(text: str, path: Path) -> list[tuple[int, dict[str, Any]]]:
    rows: list[tuple[int, dict[str, Any]]] = []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"{path}:{i}: not JSON ({exc.msg})",
                                 reason="invalid_probe_data") from exc
        if not isinstance(row, dict):
            raise InvalidRequest(f"{path}:{i}: not a JSON object", reason="invalid_probe_data")
        rows.append((i, row))
    return rows


def _csv_rows(text: str) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(text.splitlines())
    rows: list[tuple[int, dict[str, Any]]] = []
    for i, row in enumerate(reader, start=2):
        cells: dict[str, Any] = dict(row)
        if isinstance(cells.get("labels"), str):
            cells["labels"] = [x.strip() for x in cells["labels"].split("|") if x.strip()]
        rows.append((i, cells))
    return rows


def _positive(row: dict[str, Any], attribute: str, where: str) -> bool:
    if "label" in row:
        value = row["label"]
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise InvalidRequest(f"{where}: label {value!r} is not true/false",
                             reason="invalid_probe_data")
    labels = row.get("labels")
    if isinstance(labels, list):
        return attribute in labels
    raise InvalidRequest(f"{where}: row has neither 'label' nor a 'labels' list",
                         reason="invalid_probe_data")
