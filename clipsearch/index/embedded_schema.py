"""The embedded engine's table layout: Arrow schema and conversions to and from documents."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import TypeAdapter

from clipsearch.documents import DocumentBatch, DocumentFields, ImageDocument

ID = "id"
CAPTIONS = "captions"
CAPTION_TEXT = "caption_text"
EMBEDDING = "embedding"
LABEL_COLUMNS = ("dataset", "category", "split")
FIELD_COLUMNS = (ID, CAPTIONS, "dataset", "category", "split", "image_uri", "model_id")
# The document's fields once more, as one JSON string: what a hit shows, read in ONE column
# (like Vespa's document summaries or Elasticsearch's _source). Reading a column costs about
# as much for ten rows as for one, so the page of a search reads this instead of seven
# columns (~4.7 -> ~1.5 ms at 200k documents). Tables created before it existed lack it and
# are read column by column.
SUMMARY = "summary"


def table_schema(dim: int, *, summary: bool = True) -> pa.Schema:
    base = pa.schema(
        [
            pa.field(ID, pa.string(), nullable=False),
            pa.field(CAPTIONS, pa.list_(pa.string())),
            pa.field(CAPTION_TEXT, pa.string()),
            pa.field("dataset", pa.string()),
            pa.field("category", pa.string()),
            pa.field("split", pa.string()),
            pa.field("image_uri", pa.string()),
            pa.field("model_id", pa.string()),
            pa.field(EMBEDDING, pa.list_(pa.float32(), dim)),
        ]
    )
    return base.append(pa.field(SUMMARY, pa.string())) if summary else base


def has_summary(schema: pa.Schema) -> bool:
    return SUMMARY in schema.names


_FIELDS_JSON = TypeAdapter(DocumentFields)


def summary_of(doc: DocumentFields) -> str:
    """The fields of a document as the JSON its hits are rebuilt from (a subclass such as
    ``ImageDocument`` is written as its ``DocumentFields`` part: no embedding)."""
    return _FIELDS_JSON.dump_json(doc).decode()


def fields_from_summary(summary: str) -> DocumentFields:
    return DocumentFields.model_validate_json(summary)


def schema_dim(schema: pa.Schema) -> int:
    """The embedding dimension a stored table was created with."""
    field_type = schema.field(EMBEDDING).type
    if not isinstance(field_type, pa.FixedSizeListType):
        raise TypeError(f"column {EMBEDDING!r} is not a fixed-size list: {field_type}")
    return int(field_type.list_size)


def to_arrow(batch: DocumentBatch, dim: int, *, summary: bool = True) -> pa.Table:
    """A batch as one Arrow table (with the ``SUMMARY`` column unless ``summary`` is False);
    its embeddings must have ``dim`` values. The embedding column wraps the batch's float32
    matrix: no Python float per value."""
    batch.check_dim(dim)
    fields = batch.fields
    flat = pa.array(batch.vectors.reshape(-1), pa.float32())
    columns: dict[str, pa.Array] = {
        ID: pa.array([f.id for f in fields], pa.string()),
        CAPTIONS: pa.array([f.captions for f in fields], pa.list_(pa.string())),
        CAPTION_TEXT: pa.array([f.caption_text for f in fields], pa.string()),
        "dataset": pa.array([f.dataset for f in fields], pa.string()),
        "category": pa.array([f.category for f in fields], pa.string()),
        "split": pa.array([f.split for f in fields], pa.string()),
        "image_uri": pa.array([f.image_uri for f in fields], pa.string()),
        "model_id": pa.array([f.model_id for f in fields], pa.string()),
        EMBEDDING: pa.FixedSizeListArray.from_arrays(flat, dim),
    }
    if summary:
        columns[SUMMARY] = pa.array([summary_of(f) for f in fields], pa.string())
    return pa.Table.from_pydict(columns, schema=table_schema(dim, summary=summary))


def fields_from_row(row: dict[str, Any]) -> DocumentFields:
    return DocumentFields.model_validate({name: row[name] for name in FIELD_COLUMNS})


def document_from_row(row: dict[str, Any]) -> ImageDocument:
    values = {name: row[name] for name in FIELD_COLUMNS}
    values[EMBEDDING] = [float(x) for x in row[EMBEDDING]]
    return ImageDocument.model_validate(values)


def embeddings_of(table: pa.Table) -> np.ndarray:
    """The embedding column of a query result as an (n, dim) float32 matrix."""
    column = table.column(EMBEDDING).combine_chunks()
    if len(column) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    dim = column.type.list_size
    values = column.flatten().to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.float32).reshape(len(column), dim)
