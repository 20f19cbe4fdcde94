"""The document stored in the index: one image, its captions, labels and CLIP embedding.

``ImageDocument`` is one document as an object; ``DocumentBatch`` is many documents in columns
(validated fields + an (n, dim) float32 matrix), the form every index writes from.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from clipsearch.errors import InvalidRequest, VectorDimensionError

# Ids end up in URLs (/images/{id}) and in Vespa document ids (id:<ns>:image::<id>).
DOC_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@+~\-]{0,255}$"
# Label values (dataset, category, split) are used in filters: keep them simple and safe.
LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.\-+/]{0,127}$"

DocId = Annotated[str, Field(pattern=DOC_ID_PATTERN)]
Label = Annotated[str, Field(pattern=LABEL_PATTERN)]

# An embedding counts as unit length when its norm is within this of 1.
NORM_TOLERANCE = 1e-3

_DOC_ID = re.compile(DOC_ID_PATTERN)
_LABEL = re.compile(LABEL_PATTERN)
_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9._@+\-]")


def make_doc_id(dataset: str, source_id: str) -> str:
    """Stable id from a dataset name and the id the source gives the image.

    Characters outside the id alphabet are replaced by ``_``; when that happens a short hash
    of the original id is appended so that two different source ids never collide.
    """
    safe = _UNSAFE_ID_CHARS.sub("_", source_id.strip()) or "_"
    if safe != source_id:
        digest = hashlib.sha1(source_id.encode("utf-8")).hexdigest()[:8]
        safe = f"{safe[:200]}~{digest}"
    return f"{_UNSAFE_ID_CHARS.sub('_', dataset) or '_'}:{safe}"


class DocumentFields(BaseModel):
    """Everything stored about an image except its vector."""

    model_config = ConfigDict(extra="forbid")

    id: DocId
    captions: list[str] = Field(default_factory=list)
    dataset: Label
    category: Label | None = None
    split: Label | None = None
    image_uri: str = Field("", description="Where the image file lives (path or URL)")
    model_id: str = ""

    @field_validator("captions")
    @classmethod
    def _clean_captions(cls, v: list[str]) -> list[str]:
        # runs of whitespace -> one space, trimmed (str.split() and regex \s agree on what
        # whitespace is); this is per caption on every document, so no regex here
        cleaned = [" ".join(c.split()) for c in v]
        return [c for c in cleaned if c]

    @property
    def caption_text(self) -> str:
        """All captions joined: the text BM25 ranks."""
        return "\n".join(self.captions)


class ImageDocument(DocumentFields):
    """A document as written to the index: fields plus a unit-length embedding."""

    embedding: list[float]

    @field_validator("embedding")
    @classmethod
    def _unit_length(cls, v: list[float]) -> list[float]:
        if not v:
            raise ValueError("embedding is empty")
        if not all(math.isfinite(x) for x in v):
            raise ValueError("embedding has NaN or infinite values")
        norm = math.sqrt(sum(x * x for x in v))
        if norm < 1e-6:
            raise ValueError("embedding is the zero vector")
        if abs(norm - 1.0) > NORM_TOLERANCE:
            raise ValueError(f"embedding is not unit length (norm {norm:.4f})")
        return v


def invalid_vector_rows(vectors: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of an (n, dim) matrix that are not finite unit vectors
    (the zero vector included): the check of ``ImageDocument.embedding``, for a whole matrix."""
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        vectors = np.where(finite[:, None], vectors, 0)
    norms = np.linalg.norm(vectors, axis=1)
    return ~finite | (np.abs(norms - 1.0) > NORM_TOLERANCE)


def _field_problem(f: object) -> str | None:
    """Why a fields object may not be written (its id or a label breaks its pattern), or None.

    Fields are normally validated when constructed; this catches ``model_construct`` ones."""
    if not isinstance(f, DocumentFields):
        return f"expected DocumentFields, got {type(f).__name__}"
    if not (isinstance(f.id, str) and _DOC_ID.fullmatch(f.id)):
        return f"invalid document id {f.id!r}"
    for name, value in (("dataset", f.dataset), ("category", f.category), ("split", f.split)):
        if value is None and name != "dataset":
            continue
        if not (isinstance(value, str) and _LABEL.fullmatch(value)):
            return f"document {f.id!r}: invalid {name} {value!r}"
    return None


def _checked_columns(fields: Iterable[DocumentFields],
                     vectors: np.ndarray | Sequence[Sequence[float]],
                     ) -> tuple[tuple[DocumentFields, ...], np.ndarray]:
    """The fields as a tuple (ids and labels checked) and a float32 copy of the matrix."""
    fields_t = tuple(fields)
    try:
        matrix = np.array(vectors, dtype=np.float32, order="C", copy=True)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"embeddings are not an (n, dim) matrix of numbers: {exc}",
                             reason="invalid_vector") from exc
    if matrix.ndim != 2 or matrix.shape[0] != len(fields_t) or matrix.shape[1] == 0:
        raise InvalidRequest(
            f"a batch of {len(fields_t)} documents needs a ({len(fields_t)}, dim) matrix of "
            f"embeddings, got shape {matrix.shape}", reason="invalid_vector")
    for f in fields_t:
        if (problem := _field_problem(f)) is not None:
            raise InvalidRequest(problem, reason="invalid_document")
    return fields_t, matrix


class DocumentBatch:
    """Documents in columns: ``fields[i]`` goes with row ``i`` of ``vectors``.

    What every index writes from (``SearchIndex.upsert_batch``): the embeddings stay one
    (n, dim) float32 matrix from the encoder or the shard to the engine, never a Python float
    per component. Everything is checked once, at construction: each id and label against its
    pattern, every row a finite unit vector (``NORM_TOLERANCE``), as ``ImageDocument`` does one
    by one; the index checks the dimension (``check_dim``). A batch is immutable: the matrix is
    copied and read-only; slices, ``concat`` and ``dedupe_last`` make new batches from checked
    parts without checking again. Ids may repeat: writers keep the last row of an id.
    """

    __slots__ = ("_fields", "_vectors")

    _fields: tuple[DocumentFields, ...]
    _vectors: np.ndarray

    def __init__(self, fields: Iterable[DocumentFields],
                 vectors: np.ndarray | Sequence[Sequence[float]]) -> None:
        fields_t, matrix = _checked_columns(fields, vectors)
        bad = invalid_vector_rows(matrix)
        if bad.any():
            first = int(np.argmax(bad))
            raise InvalidRequest(
                f"document {fields_t[first].id!r}: the embedding is not a finite unit vector "
                f"({int(bad.sum())} such row(s) in the batch)", reason="invalid_vector")
        matrix.flags.writeable = False
        self._fields, self._vectors = fields_t, matrix

    @classmethod
    def _trusted(cls, fields: tuple[DocumentFields, ...], matrix: np.ndarray) -> DocumentBatch:
        """A batch of parts that were checked already (slices of checked batches)."""
        batch = object.__new__(cls)
        matrix.flags.writeable = False
        batch._fields, batch._vectors = fields, matrix
        return batch

    @classmethod
    def usable(cls, fields: Iterable[DocumentFields],
               vectors: np.ndarray | Sequence[Sequence[float]],
               ) -> tuple[DocumentBatch, list[int]]:
        """The rows whose embedding is a finite unit vector, as a batch, and the positions of
        the others: for a feeder that reports unusable embeddings one by one instead of
        failing them all. Ids and labels are checked as in the constructor."""
        fields_t, matrix = _checked_columns(fields, vectors)
        bad = invalid_vector_rows(matrix)
        if not bad.any():
            return cls._trusted(fields_t, matrix), []
        keep = np.flatnonzero(~bad)
        return (cls._trusted(tuple(fields_t[i] for i in keep), matrix[keep]),
                np.flatnonzero(bad).tolist())

    @classmethod
    def from_documents(cls, docs: Sequence[ImageDocument], *, dim: int) -> DocumentBatch:
        """``docs`` as a batch; every embedding must have ``dim`` values."""
        for doc in docs:
            if len(doc.embedding) != dim:
                raise VectorDimensionError(
                    f"document {doc.id!r} has a {len(doc.embedding)}-d embedding but the "
                    f"index stores {dim}-d embeddings")
        matrix = np.array([doc.embedding for doc in docs], dtype=np.float32)
        return cls(docs, matrix.reshape(len(docs), dim))

    @classmethod
    def concat(cls, batches: Sequence[DocumentBatch]) -> DocumentBatch:
        """One batch of the rows of ``batches``, in order."""
        if not batches:
            raise ValueError("concat needs at least one batch")
        parts = [b for b in batches if len(b)] or [batches[0]]
        if len(parts) == 1:
            return parts[0]
        dims = sorted({b.dim for b in parts})
        if len(dims) > 1:
            raise VectorDimensionError(f"cannot join batches of {dims}-d embeddings")
        fields = tuple(f for b in parts for f in b._fields)
        return cls._trusted(fields, np.concatenate([b._vectors for b in parts]))

    # --- views ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._fields)

    def __getitem__(self, rows: slice) -> DocumentBatch:
        if not isinstance(rows, slice):
            raise TypeError("a DocumentBatch is indexed by slices; use rows() for documents")
        return self._trusted(self._fields[rows], self._vectors[rows])

    def __repr__(self) -> str:
        return f"DocumentBatch({len(self)} documents, {self.dim}-d)"

    @property
    def fields(self) -> tuple[DocumentFields, ...]:
        return self._fields

    @property
    def vectors(self) -> np.ndarray:
        """(n, dim) float32, read-only, rows of unit length."""
        return self._vectors

    @property
    def dim(self) -> int:
        return int(self._vectors.shape[1])

    @property
    def ids(self) -> list[str]:
        return [f.id for f in self._fields]

    def rows(self) -> Iterator[tuple[DocumentFields, np.ndarray]]:
        return zip(self._fields, self._vectors, strict=True)

    def documents(self) -> list[ImageDocument]:
        """The rows as ``ImageDocument`` objects (costly: a Python float per component)."""
        names = list(DocumentFields.model_fields)
        return [ImageDocument.model_construct(**{n: getattr(f, n) for n in names},
                                              embedding=vector)
                for f, vector in zip(self._fields, self._vectors.tolist(), strict=True)]

    # --- what writers need ------------------------------------------------------------------
    def check_dim(self, dim: int) -> None:
        """Raise ``VectorDimensionError`` unless the embeddings have ``dim`` values."""
        if self.dim != dim:
            raise VectorDimensionError(
                f"the batch has {self.dim}-d embeddings but the index stores {dim}-d "
                "embeddings")

    def dedupe_last(self) -> DocumentBatch:
        """One row per id: where an id repeats, its last row wins (rows keep their order)."""
        last = {f.id: row for row, f in enumerate(self._fields)}
        if len(last) == len(self._fields):
            return self
        rows = sorted(last.values())
        return self._trusted(tuple(self._fields[r] for r in rows), self._vectors[rows])
