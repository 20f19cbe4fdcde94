"""The index interface: one protocol, two engines (embedded LanceDB and Vespa)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from clipsearch.documents import DocumentBatch, DocumentFields, ImageDocument
from clipsearch.index.generations import Generation
from clipsearch.search import Filters, SearchPlan, SearchResult


@runtime_checkable
class SearchIndex(Protocol):
    """Async so the gateway can serve many queries; engines with sync clients use threads.

    Contract shared by every implementation (checked by ``tests/index_conformance.py``):

    * ``upsert_batch`` / ``upsert`` are idempotent per id (a second put of the same id
      replaces the first); where an id repeats inside one batch, its last row wins. A batch
      whose embeddings have the wrong dimension raises ``VectorDimensionError`` and writes
      nothing.
    * ``search`` returns hits with the fused ``score`` and each leg's score: ``lexical`` is
      ``bm25(caption)`` (k1=1.2, b=0.75; lower-cased, English-stemmed, stop words kept) and
      ``vector`` is the prenormalized-angular closeness; see ``clipsearch.fusion``.
      A leg that did not run is ``None``.
    * a query vector of the wrong dimension raises ``VectorDimensionError``; an engine that
      cannot be reached raises ``BackendUnavailable``.
    """

    @property
    def dim(self) -> int: ...

    async def ensure_ready(self) -> None:
        """Create what is missing (tables) or check that it exists (Vespa application)."""

    async def ping(self) -> None:
        """Raise ``BackendUnavailable`` unless the engine answers."""

    async def upsert_batch(self, batch: DocumentBatch) -> int:
        """Write a batch (insert or replace by id); returns how many distinct ids it held.

        The bulk write path (the feeder's): the embeddings stay one float32 matrix."""

    async def upsert(self, docs: Sequence[ImageDocument]) -> int:
        """``upsert_batch`` of ``DocumentBatch.from_documents(docs, dim=self.dim)``."""

    async def delete(self, ids: Sequence[str]) -> int:
        """Remove documents by id; unknown ids are ignored; returns how many existed."""

    async def get(self, doc_id: str) -> ImageDocument | None:
        """One document with its embedding, or None."""

    async def existing_ids(self, ids: Sequence[str]) -> set[str]:
        """The subset of ``ids`` that is stored (used by the feeder to resume)."""

    async def count(self, filters: Filters | None = None) -> int:
        """Number of documents (matching the filters)."""

    async def search(self, plan: SearchPlan) -> SearchResult: ...

    async def flush(self) -> None:
        """Make recent writes cheap to read (compaction, index build); may be a no-op."""

    async def close(self) -> None: ...


@runtime_checkable
class GenerationalIndex(SearchIndex, Protocol):
    """An index holding generations (``clipsearch.index.generations``): the ``SearchIndex``
    methods act on the ACTIVE generation, ``at_generation`` on a given one.

    Contract (checked by ``tests/index_conformance.py``, ``GenerationConformance``):

    * an index made before generations is one complete, active generation ``g0``;
    * ``create_generation`` adds an empty ``building`` generation (any dimension);
      ``activate_generation`` refuses a building one (``GenerationNotReady``, with its
      progress) and switches atomically otherwise; ``drop_generation`` refuses the active one
      (``GenerationInUse``); an unknown name raises ``UnknownGeneration``;
    * ``claim_space`` (called before writing vectors of a model into a generation) raises
      ``EmbeddingSpaceMismatch`` for another space and ``DimensionChange`` for another
      dimension, writing nothing; it records the space of a generation that has none yet.
    """

    def at_generation(self, name: str) -> SearchIndex: ...

    async def generations(self) -> list[Generation]: ...

    async def generation(self, name: str) -> Generation: ...

    async def active_generation(self) -> Generation: ...

    async def create_generation(self, *, model_id: str | None, space: str | None, dim: int,
                                name: str | None = None, expected: int | None = None,
                                source: str | None = None) -> Generation: ...

    async def set_expected(self, name: str, expected: int) -> None: ...

    async def complete_generation(self, name: str) -> Generation: ...

    async def activate_generation(self, name: str) -> Generation: ...

    async def drop_generation(self, name: str) -> Generation: ...

    async def claim_space(self, name: str, *, model_id: str, space: str | None,
                          dim: int) -> Generation: ...

    async def scan_fields(self, name: str, *, filters: Filters | None = None,
                          limit: int | None = None) -> list[DocumentFields]: ...

    async def ids(self, name: str, *, filters: Filters | None = None) -> set[str]: ...
