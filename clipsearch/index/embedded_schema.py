"""The embedded engine's table layout: Arrow schema and conversions to and from documents."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from clipsearch.documents import DocumentFields, ImageDocument
from clipsearch.errors import VectorDimensionError

ID = "id"
CAPTIONS = "captions"
CAPTION_TEXT = "caption_text"
EMBEDDING = "embedding"
LABEL_COLUMNS = ("dataset", "category", "split")
FIELD_COLUMNS = (ID, CAPTIONS, "dataset", "category", "split", "image_uri", "model_id")


def table_schema(dim: int) -> pa.Schema:
    return pa.schema(
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


def schema_dim(schema: pa.Schema) -> int:
    """The embedding dimension a stored table was created with."""
    field_type = schema.field(EMBEDDING).type
    if not isinstance(field_type, pa.FixedSizeListType):
        raise TypeError(f"column {EMBEDDING!r} is not a fixed-size list: {field_type}")
    return int(field_type.list_size)


def dedupe_last(docs: Sequence[ImageDocument]) -> list[ImageDocument]:
    """One document per id; when an id repeats inside a batch the later version wins."""
    latest: dict[str, ImageDocument] = {}
    for doc in docs:
        latest.pop(doc.id, None)
        latest[doc.id] = doc
    return list(latest.values())


def to_arrow(docs: Sequence[ImageDocument], dim: int) -> pa.Table:
    """Documents as one Arrow table; every embedding must have ``dim`` values."""
    for doc in docs:
        if len(doc.embedding) != dim:
            raise VectorDimensionError(
                f"document {doc.id!r} has a {len(doc.embedding)}-d embedding but the index "
                f"stores {dim}-d embeddings"
            )
    flat = np.asarray([doc.embedding for doc in docs], dtype=np.float32).reshape(-1)
    columns: dict[str, pa.Array] = {
        ID: pa.array([d.id for d in docs], pa.string()),
        CAPTIONS: pa.array([d.captions for d in docs], pa.list_(pa.string())),
        CAPTION_TEXT: pa.array([d.caption_text for d in docs], pa.string()),
        "dataset": pa.array([d.dataset for d in docs], pa.string()),
        "category": pa.array([d.category for d in docs], pa.string()),
        "split": pa.array([d.split for d in docs], pa.string()),
        "image_uri": pa.array([d.image_uri for d in docs], pa.string()),
        "model_id": pa.array([d.model_id for d in docs], pa.string()),
        EMBEDDING: pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), dim),
    }
    return pa.Table.from_pydict(columns, schema=table_schema(dim))


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
