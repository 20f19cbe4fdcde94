"""``clipsearch export``: embedding shards -> Vespa feed JSONL, for ``vespa feed FILE``.

One line per document: ``{"put": "id:<namespace>:image::<id>", "fields": {...}}`` with the
field names of ``vespa-app/schemas/image.sd`` (taken from ``clipsearch.index.vespa.docs``, the
same mapping the Vespa client writes with).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import TextIO

import numpy as np
from pydantic import BaseModel, Field

from clipsearch.documents import DocumentBatch
from clipsearch.errors import InvalidRequest
from clipsearch.index.vespa.docs import document_id, to_fields
from feeder.pipeline import chunks
from feeder.store import EmbeddingStore, StoredRow

EXPORT_CHUNK = 1024


class ExportRequest(BaseModel):
    embeddings: Path
    namespace: str = Field("clipsearch", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    model_id: str | None = None
    dataset: str | None = None
    split: str | None = None
    limit: int | None = Field(None, ge=1)


def selected_rows(req: ExportRequest) -> Iterator[StoredRow]:
    store = EmbeddingStore(req.embeddings)
    if not store.shards():
        raise InvalidRequest(f"no embedding shards (shard-*.parquet) in {req.embeddings}",
                             reason="no_shards")
    models = {e.model_id for e in store.catalog().values()}
    if req.model_id is None and len(models) > 1:
        raise InvalidRequest(f"{req.embeddings} holds embeddings of several models "
                             f"({', '.join(sorted(models))}); choose one with --model-id",
                             reason="mixed_models")
    rows = (r for r in store.rows()
            if (req.model_id is None or r.fields.model_id == req.model_id)
            and (req.dataset is None or r.fields.dataset == req.dataset)
            and (req.split is None or r.fields.split == req.split))
    return islice(rows, req.limit) if req.limit is not None else rows


def write_vespa_feed(req: ExportRequest, out: TextIO) -> tuple[int, int]:
    """Write one put per stored document; returns (written, skipped for a broken vector)."""
    written = skipped = 0
    for chunk in chunks(selected_rows(req), EXPORT_CHUNK):
        batch, rejected = DocumentBatch.usable([r.fields for r in chunk],
                                               np.stack([r.vector for r in chunk]))
        skipped += len(rejected)
        for fields, vector in zip(batch.fields, batch.vectors.tolist(), strict=True):
            out.write(json.dumps({"put": document_id(req.namespace, fields.id),
                                  "fields": to_fields(fields, vector)},
                                 ensure_ascii=False) + "\n")
        written += len(batch)
    return written, skipped
