"""The generic format: a folder of images plus a JSONL or CSV manifest.

JSONL rows: ``{"id", "file", "captions": [...] | "caption": "...", "dataset", "category",
"split"}``. CSV: a header with the same names; ``captions`` holds a JSON list or ``|``-separated
captions, ``caption`` one caption. ``file`` is relative to the manifest's folder (or absolute).
``id`` defaults to the file name without its extension, ``dataset`` to ``--dataset`` or the
manifest folder's name.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clipsearch.datasets.readers.text import decode_text
from clipsearch.datasets.records import Action, ReadItem, Reason, Rejection, SourceRecord

MANIFEST_NAMES = ("manifest.jsonl", "manifest.csv")


def find_manifest(source: Path) -> Path:
    if source.is_file():
        return source
    for name in MANIFEST_NAMES:
        if (source / name).is_file():
            return source / name
    raise FileNotFoundError(f"no manifest.jsonl or manifest.csv in {source}")


def read_generic(source: Path, *, dataset: str | None = None) -> Iterator[ReadItem]:
    manifest = find_manifest(source)
    base = manifest.parent
    default_dataset = dataset or base.name or "generic"
    lines = manifest.read_bytes().splitlines(keepends=True)
    decoded: list[str] = []
    for number, raw in enumerate(lines, start=1):
        text, repaired = decode_text(raw)
        if repaired:
            yield Rejection(file=f"{manifest}:{number}", reason=Reason.non_utf8,
                            action=Action.repaired, detail="line decoded as cp1252/latin-1")
        decoded.append(text)
    rows = _csv_rows(decoded) if manifest.suffix.lower() == ".csv" else _jsonl_rows(decoded)
    for where, row in rows:
        if isinstance(row, str):
            yield Rejection(file=f"{manifest}:{where}", reason=Reason.invalid_row, detail=row)
            continue
        yield _to_record(row, base, default_dataset, f"{manifest}:{where}", dataset)


def _jsonl_rows(lines: list[str]) -> Iterator[tuple[int, dict[str, Any] | str]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, f"not JSON: {exc.msg}"
            continue
        yield number, row if isinstance(row, dict) else "a JSONL row must be an object"


def _csv_rows(lines: list[str]) -> Iterator[tuple[int, dict[str, Any] | str]]:
    reader = csv.DictReader(lines)
    for row in reader:
        where = reader.line_num
        if None in row:
            yield where, "more cells than header columns"
            continue
        cells: dict[str, Any] = {k.strip(): v for k, v in row.items() if k}
        caps = cells.get("captions")
        if isinstance(caps, str):
            cells["captions"] = _split_captions(caps)
        yield where, cells


def _split_captions(cell: str) -> list[str]:
    cell = cell.strip()
    if cell.startswith("["):
        try:
            value = json.loads(cell)
            if isinstance(value, list):
                return [str(c) for c in value]
        except json.JSONDecodeError:
            pass
    return [c for c in cell.split("|")]


def _to_record(row: dict[str, Any], base: Path, default_dataset: str, where: str,
               forced_dataset: str | None) -> ReadItem:
    file = row.get("file") or row.get("filename") or row.get("image")
    if not isinstance(file, str) or not file.strip():
        return Rejection(id=str(row.get("id") or ""), file=where, reason=Reason.invalid_row,
                         detail="row has no 'file'")
    captions_value = row.get("captions")
    captions: list[str]
    if isinstance(captions_value, list):
        captions = [str(c) for c in captions_value if c is not None]
    elif isinstance(captions_value, str):
        captions = [captions_value]
    else:
        captions = []
    single = row.get("caption")
    if isinstance(single, str):
        captions.append(single)
    path = Path(file.strip())
    source_id = str(row.get("id") or "").strip() or path.stem
    try:
        return SourceRecord(
            source_id=source_id,
            file=path if path.is_absolute() else base / path,
            captions=captions,
            dataset=forced_dataset or _opt(row.get("dataset")) or default_dataset,
            category=_opt(row.get("category")),
            split=_opt(row.get("split")),
        )
    except ValueError as exc:
        return Rejection(id=source_id, file=where, reason=Reason.invalid_row, detail=str(exc))


def _opt(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None
