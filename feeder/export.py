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

from pydantic import BaseModel, Field

from clipsearch.errors import InvalidRequest
from clipsearch.index.vespa.docs import document_id, to_fields
from feeder.docs import make_documents
from feeder.store import EmbeddingStore, StoredRow


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
    for row in selected_rows(req):
        doc = make_documents([row.fields], row.vector[None, :])[0]
        if doc is None:
            skipped += 1
            continue
        out.write(json.dumps({"put": document_id(req.namespace, doc.id),
                              "fields": to_fields(doc)}, ensure_ascii=False) + "\n")
        written += 1
    return written, skipped
