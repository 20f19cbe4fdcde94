"""From reader rows to planned documents: select (split, limit), de-duplicate, repair labels,
check the file and hash its bytes. Everything rejected goes to the dead-letter report."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from clipsearch.datasets.records import Action, ReadItem, Reason, Rejection, SourceRecord
from clipsearch.documents import DocumentFields, make_doc_id
from feeder.deadletter import DeadLetters
from feeder.shards import Shard

_LABEL_BAD = re.compile(r"[^A-Za-z0-9 _.\-+/]")
HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class Planned:
    fields: DocumentFields
    file: Path
    content_hash: str

    @property
    def id(self) -> str:
        return self.fields.id


def content_hash(path: Path, buffer: bytearray | None = None) -> str:
    """blake2b-128 of the file's bytes. With ``buffer`` the file is read into it, so hashing
    allocates nothing per file (a ``read(1 MiB)`` per file, shrunk to the file's size, is a
    heap allocation that a long feed interleaves with everything else: feeder/heap.py)."""
    h = hashlib.blake2b(digest_size=16)
    buf = buffer if buffer is not None else bytearray(HASH_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(view):
            h.update(view[:n])
    return h.hexdigest()


def repair_label(value: str | None) -> str | None:
    """A label in the allowed alphabet (or None when nothing usable is left)."""
    if value is None:
        return None
    fixed = _LABEL_BAD.sub("_", value.strip()).lstrip(" _.-+/")[:128].rstrip()
    return fixed or None


def select(items: Iterable[ReadItem], *, split: str | None,
           limit: int | None) -> Iterator[ReadItem]:
    """Rows of the requested split, up to ``limit`` records (notes and bad rows pass)."""
    taken = 0
    for item in items:
        if limit is not None and taken >= limit:
            return
        if isinstance(item, SourceRecord):
            if split is not None and item.split != split:
                continue
            taken += 1
        yield item


def record_doc_id(rec: SourceRecord) -> str:
    """The document id a source row becomes (its dataset label repaired first)."""
    return make_doc_id(repair_label(rec.dataset) or "unnamed", rec.source_id)


class Planner:
    """Counts every row it reads; yields the rows that can become documents. With a
    ``shard``, rows of other shards are passed over before anything else (not read, not
    checked, not reported: they are another feeder's)."""

    def __init__(self, dead: DeadLetters, model_id: str, shard: Shard | None = None) -> None:
        self._dead = dead
        self._model_id = model_id
        self._shard = shard
        self._seen: set[str] = set()
        self._hash_buffer = bytearray(HASH_CHUNK)
        self.read = 0
        self.other_shards = 0

    def _mine(self, item: ReadItem) -> bool:
        if self._shard is None:
            return True
        key = (item.id or item.file) if isinstance(item, Rejection) else record_doc_id(item)
        if self._shard.owns(key):
            return True
        self.other_shards += 1
        return False

    def plan(self, items: Iterable[ReadItem]) -> Iterator[Planned]:
        for item in items:
            if not self._mine(item):
                continue
            if isinstance(item, Rejection):
                if item.action == Action.skipped:
                    self.read += 1
                self._dead.add(item)
                continue
            self.read += 1
            planned = self._plan_one(item)
            if planned is not None:
                yield planned

    def _plan_one(self, rec: SourceRecord) -> Planned | None:
        labels = {"dataset": rec.dataset, "category": rec.category, "split": rec.split}
        fixed = {k: repair_label(v) for k, v in labels.items()}
        dataset = fixed["dataset"] or "unnamed"
        doc_id = record_doc_id(rec)
        where = str(rec.file)
        if doc_id in self._seen:
            self._dead.add(Rejection(id=doc_id, file=where, reason=Reason.duplicate_id,
                                     detail="the source lists this id more than once; "
                                     "the first row was kept"))
            return None
        self._seen.add(doc_id)
        for key, value in labels.items():
            if (value or None) != fixed[key] and value is not None:
                self._dead.add(Rejection(id=doc_id, file=where, reason=Reason.label_repaired,
                                         action=Action.repaired,
                                         detail=f"{key} {value!r} stored as {fixed[key]!r}"))
        try:
            fields = DocumentFields(id=doc_id, captions=rec.captions, dataset=dataset,
                                    category=fixed["category"], split=fixed["split"],
                                    image_uri=str(rec.file.resolve()), model_id=self._model_id)
        except ValidationError as exc:
            self._dead.add(Rejection(id=doc_id, file=where, reason=Reason.invalid_row,
                                     detail=str(exc.errors()[0]["msg"])))
            return None
        try:
            chash = content_hash(rec.file, self._hash_buffer)
        except FileNotFoundError:
            self._dead.add(Rejection(id=doc_id, file=where, reason=Reason.missing_file,
                                     detail="image file not found"))
            return None
        except OSError as exc:
            self._dead.add(Rejection(id=doc_id, file=where, reason=Reason.invalid_image,
                                     detail=f"cannot read: {exc}"))
            return None
        if not fields.captions:
            self._dead.add(Rejection(id=doc_id, file=where, reason=Reason.empty_caption,
                                     action=Action.repaired,
                                     detail="no caption text; indexed for image search only"))
        return Planned(fields=fields, file=rec.file, content_hash=chash)
