"""Our ``ImageDocument`` <-> Vespa document JSON (``/document/v1``) and document ids."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from clipsearch.documents import DocumentFields, ImageDocument
from clipsearch.errors import BackendError
from clipsearch.index.vespa import schema_names as n


def document_id(namespace: str, key: str) -> str:
    """Vespa's full document id: ``id:<namespace>:image::<key>``."""
    return f"id:{namespace}:{n.SCHEMA}::{key}"


def key_from_document_id(doc_id: str) -> str:
    prefix, sep, key = doc_id.partition("::")
    if not sep or not prefix.startswith("id:"):
        raise BackendError(f"unexpected Vespa document id {doc_id!r}")
    return key


def document_path(namespace: str, key: str) -> str:
    """``/document/v1/<ns>/image/docid/<key>`` with the key percent-encoded as one segment."""
    return f"/document/v1/{quote(namespace, safe='')}/{n.SCHEMA}/docid/{quote(key, safe='')}"


def to_fields(doc: DocumentFields, embedding: Sequence[float]) -> dict[str, Any]:
    """The ``fields`` of a put: a document's fields and its embedding (a row of a
    ``DocumentBatch``)."""
    fields: dict[str, Any] = {
        n.F_ID: doc.id,
        n.F_CAPTION: doc.caption_text,
        n.F_CAPTIONS: doc.captions,
        n.F_DATASET: doc.dataset,
        n.F_IMAGE_URI: doc.image_uri,
        n.F_MODEL_ID: doc.model_id,
        n.F_EMBEDDING: {"values": [float(x) for x in embedding]},
    }
    if doc.category is not None:
        fields[n.F_CATEGORY] = doc.category
    if doc.split is not None:
        fields[n.F_SPLIT] = doc.split
    return fields


def tensor_values(value: Any) -> list[float]:
    """A dense 1-d tensor in any of Vespa's JSON forms: ``[..]``, ``{"values": [..]}``,
    or ``{"cells": [{"address": {"x": "0"}, "value": ..}, ..]}`` / ``{"cells": {"0": ..}}``."""
    if isinstance(value, list):
        return [float(x) for x in value]
    if isinstance(value, dict):
        if "values" in value:
            return [float(x) for x in value["values"]]
        cells = value.get("cells")
        if isinstance(cells, list):
            pairs = [(int(next(iter(c["address"].values()))), float(c["value"])) for c in cells]
            return [v for _, v in sorted(pairs)]
        if isinstance(cells, dict):
            return [float(v) for _, v in sorted(cells.items(), key=lambda kv: int(kv[0]))]
    raise BackendError("Vespa returned an embedding in an unknown tensor format")


def document_fields(fields: dict[str, Any]) -> DocumentFields:
    """The stored fields of a Vespa document or hit (everything but the embedding)."""
    return DocumentFields(
        id=fields[n.F_ID],
        captions=list(fields.get(n.F_CAPTIONS) or []),
        dataset=fields[n.F_DATASET],
        category=fields.get(n.F_CATEGORY) or None,
        split=fields.get(n.F_SPLIT) or None,
        image_uri=fields.get(n.F_IMAGE_URI) or "",
        model_id=fields.get(n.F_MODEL_ID) or "",
    )


def from_fields(fields: dict[str, Any]) -> ImageDocument:
    return ImageDocument(**document_fields(fields).model_dump(),
                         embedding=tensor_values(fields[n.F_EMBEDDING]))
