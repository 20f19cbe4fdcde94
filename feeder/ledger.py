"""What this feeder has written to one index: id -> fingerprint of the document it sent.

Appended after every acknowledged batch. With the index's own ``existing_ids`` it tells a
rerun what is still to feed: an id the index lacks, or whose fields/embedding changed since it
was fed. Losing the ledger only costs a re-feed (upserts are idempotent).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from json.encoder import encode_basestring_ascii as json_string
from pathlib import Path

from clipsearch.documents import DocumentFields
from clipsearch.settings import Backend, Settings


def ledger_path(settings: Settings) -> Path:
    target = str(settings.index_dir.resolve()) if settings.backend == Backend.embedded else (
        f"{settings.vespa_url}|{settings.vespa_namespace}")
    key = hashlib.sha1(target.encode()).hexdigest()[:10]
    name = f"ledger-{settings.backend.value}-{settings.table}-{key}.jsonl"
    return settings.data_dir / "feeder" / name


def fingerprint(fields: DocumentFields, content_hash: str) -> str:
    payload = fields.model_dump_json() + "|" + content_hash
    return hashlib.blake2b(payload.encode("utf-8"), digest_size=12).hexdigest()


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, str]:
        fed: dict[str, str] = {}
        if not self.path.is_file():
            return fed
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    row = json.loads(line)
                    fed[str(row["id"])] = str(row["fp"])
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a kill
        return fed

    def append(self, entries: Iterable[tuple[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # the line json.dumps({"id": i, "fp": fp}) writes, ~10x cheaper (a feed appends
        # thousands of lines a second)
        text = "".join(f'{{"id": {json_string(i)}, "fp": {json_string(fp)}}}\n'
                       for i, fp in entries)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
