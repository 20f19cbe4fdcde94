"""The embedded engine with generations: one LanceDB table per generation, an active pointer.

``GenerationalEmbeddedIndex`` is what ``open_index`` returns for the embedded backend. As a
``SearchIndex`` it reads and writes the ACTIVE generation (resolved on every call, so an
``activate`` by another process is followed at once); ``at_generation(name)`` gives the plain
``EmbeddedIndex`` of one generation (the gateway pins one per request, so every answer comes
from exactly one generation; ``reindex`` writes a building one). Generation ``g0`` is the
configured table itself, so indexes made before generations keep working unchanged; later
generations live in ``<table>__<name>``. The catalog: ``clipsearch.index.generation_registry``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

import lancedb
import pyarrow as pa

from clipsearch.documents import DocumentBatch, DocumentFields, ImageDocument
from clipsearch.index.embedded import WRITE_BATCH, EmbeddedIndex
from clipsearch.index.embedded_duplicates import DuplicateReport
from clipsearch.index.embedded_filters import filters_sql
from clipsearch.index.embedded_schema import FIELD_COLUMNS, ID
from clipsearch.index.generation_registry import GenerationRegistry
from clipsearch.index.generations import (
    LEGACY_NAME,
    Catalog,
    Generation,
    GenerationInUse,
    GenerationState,
    check_claim,
    record_space,
    require_complete,
)
from clipsearch.search import Filters, SearchPlan, SearchResult
from clipsearch.settings import Settings


class GenerationalEmbeddedIndex:
    """``SearchIndex`` + ``GenerationalIndex`` over LanceDB tables under ``path``."""

    def __init__(self, path: Path, *, table: str = "images", dim: int = 512,
                 hnsw_ef: int = 300, vector_index_min_rows: int = 50_000,
                 write_batch: int = WRITE_BATCH, metadata_cache_mb: int = 64) -> None:
        self._path = Path(path)
        self._table = table
        self._registry = GenerationRegistry(self._path, table=table, dim=dim)
        # one generation's engine, given its table and dimension
        self._new_engine = partial(EmbeddedIndex, self._path, hnsw_ef=hnsw_ef,
                                   vector_index_min_rows=vector_index_min_rows,
                                   write_batch=write_batch,
                                   metadata_cache_mb=metadata_cache_mb)
        self._engines: dict[str, EmbeddedIndex] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> GenerationalEmbeddedIndex:
        return cls(settings.index_dir, table=settings.table, dim=settings.embedding_dim,
                   hnsw_ef=settings.hnsw_ef,
                   vector_index_min_rows=settings.vector_index_min_rows,
                   metadata_cache_mb=settings.lancedb_metadata_cache_mb)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def registry(self) -> GenerationRegistry:
        return self._registry

    # --- engines per generation ---------------------------------------------------------
    def _engine_for(self, gen: Generation) -> EmbeddedIndex:
        engine = self._engines.get(gen.name)
        if engine is None or engine.dim != gen.dim:
            engine = self._new_engine(table=gen.table, dim=gen.dim)
            self._engines[gen.name] = engine
        return engine

    def at_generation(self, name: str) -> EmbeddedIndex:
        """The index of one generation (UnknownGeneration if there is none of that name)."""
        return self._engine_for(self._registry.read().get(name))

    def _active(self) -> EmbeddedIndex:
        return self._engine_for(self._registry.read().active_generation())

    # --- SearchIndex on the active generation ------------------------------------------
    @property
    def dim(self) -> int:
        return self._registry.read().active_generation().dim

    async def ensure_ready(self) -> None:
        await self._active().ensure_ready()

    async def ping(self) -> None:
        await self._active().ping()

    async def upsert_batch(self, batch: DocumentBatch) -> int:
        return await self._active().upsert_batch(batch)

    async def upsert(self, docs: Sequence[ImageDocument]) -> int:
        return await self._active().upsert(docs)

    async def delete(self, ids: Sequence[str]) -> int:
        return await self._active().delete(ids)

    async def get(self, doc_id: str) -> ImageDocument | None:
        return await self._active().get(doc_id)

    async def existing_ids(self, ids: Sequence[str]) -> set[str]:
        return await self._active().existing_ids(ids)

    async def count(self, filters: Filters | None = None) -> int:
        return await self._active().count(filters)

    async def search(self, plan: SearchPlan) -> SearchResult:
        return await self._active().search(plan)

    async def flush(self) -> None:
        await self._active().flush()

    async def flush_pending(self) -> bool:
        """``EmbeddedIndex.flush_pending`` of the active generation (issue 16)."""
        return await self._active().flush_pending()

    async def check_duplicates(self, *, repair: bool = False) -> DuplicateReport:
        """``EmbeddedIndex.check_duplicates`` of the active generation (issue 16)."""
        return await self._active().check_duplicates(repair=repair)

    async def close(self) -> None:
        engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            await engine.close()

    # --- generations ------------------------------------------------------------------
    async def generations(self) -> list[Generation]:
        catalog = self._registry.read()
        out = []
        for gen in catalog.generations:
            documents = await self._engine_for(gen).count()
            out.append(gen.model_copy(update={"documents": documents,
                                              "active": gen.name == catalog.active}))
        return out

    async def active_generation(self) -> Generation:
        catalog = self._registry.read()
        return catalog.active_generation().model_copy(update={"active": True})

    async def generation(self, name: str) -> Generation:
        catalog = self._registry.read()
        gen = catalog.get(name)
        return gen.model_copy(update={"documents": await self._engine_for(gen).count(),
                                      "active": name == catalog.active})

    async def create_generation(self, *, model_id: str | None, space: str | None, dim: int,
                                name: str | None = None, expected: int | None = None,
                                source: str | None = None) -> Generation:
        """A new, empty, building generation (its table is created now)."""

        def add(catalog: Catalog) -> Generation:
            chosen = name or catalog.next_name()
            if any(g.name == chosen for g in catalog.generations):
                raise GenerationInUse(f"generation {chosen!r} exists already")
            table = self._table if chosen == LEGACY_NAME else f"{self._table}__{chosen}"
            gen = Generation(name=chosen, table=table, dim=dim, model_id=model_id,
                             space=space, state=GenerationState.building,
                             expected=expected, source=source)
            catalog.generations.append(gen)
            return gen

        await self._adopt_legacy()
        gen = self._registry.update(add)
        await self._engine_for(gen).ensure_ready()
        return gen

    async def set_expected(self, name: str, expected: int) -> None:
        self._registry.update(lambda catalog: catalog.set_expected(name, expected))

    async def complete_generation(self, name: str) -> Generation:
        return self._registry.update(lambda catalog: catalog.mark_complete(name))

    async def activate_generation(self, name: str) -> Generation:
        """Make ``name`` active (atomically); a building generation is refused."""
        gen = await self.generation(name)
        require_complete(gen)
        await self._adopt_legacy()
        self._registry.update(lambda catalog: catalog.make_active(name))
        return gen.model_copy(update={"active": True})

    async def drop_generation(self, name: str) -> Generation:
        """Delete an inactive generation and its table."""
        catalog = self._registry.read()
        gen = catalog.get(name)
        if name == catalog.active:
            raise GenerationInUse(f"generation {name!r} is active: activate another first")
        engine = self._engines.pop(name, None)
        if engine is not None:
            await engine.close()

        def remove(cat: Catalog) -> None:
            if cat.active == name:
                raise GenerationInUse(f"generation {name!r} became active meanwhile")
            cat.generations = [g for g in cat.generations if g.name != name]
        self._registry.update(remove)
        conn = await lancedb.connect_async(str(self._path))
        try:
            if gen.table in await conn.table_names():
                await conn.drop_table(gen.table)
        finally:
            conn.close()
        return gen

    async def claim_space(self, name: str, *, model_id: str, space: str | None,
                          dim: int) -> Generation:
        """Before writing vectors of ``space`` into ``name``: refuse another space or
        dimension (nothing written); record the space of a generation that has none yet
        (empty, or fed with the same model id before spaces were recorded)."""
        gen = await self.generation(name)

        async def stored_models() -> set[str]:
            return {f.model_id for f in await self.scan_fields(name, limit=100)}

        if not await check_claim(gen, model_id=model_id, space=space, dim=dim,
                                 stored_models=stored_models):
            return gen
        return self._registry.update(record_space(name, model_id=model_id, space=space))

    async def _adopt_legacy(self) -> None:
        """Write the catalog file of an index that predates generations (g0 = its table)."""
        if not self._registry.exists():
            self._registry.update(lambda catalog: None)

    async def scan_fields(self, name: str, *, filters: Filters | None = None,
                          limit: int | None = None) -> list[DocumentFields]:
        """The stored fields (no vectors) of a generation's documents."""
        rows = await self._select(name, list(FIELD_COLUMNS), filters, limit)
        return [DocumentFields.model_validate(row) for row in rows.to_pylist()]

    async def ids(self, name: str, *, filters: Filters | None = None) -> set[str]:
        """The ids stored in a generation (matching ``filters``)."""
        return set((await self._select(name, [ID], filters, None)).column(ID).to_pylist())

    async def _select(self, name: str, columns: list[str], filters: Filters | None,
                      limit: int | None) -> pa.Table:
        engine = self.at_generation(name)
        await engine.ensure_ready()  # creates the table of an empty generation
        conn = await lancedb.connect_async(str(self._path))
        try:
            table = await conn.open_table(self._registry.read().get(name).table)
            try:
                where = filters_sql(filters)
                total = await table.count_rows(where)
                query = table.query().select(columns).limit(max(1, min(total, limit or total)))
                if where:
                    query = query.where(where)
                return await query.to_arrow()
            finally:
                table.close()
        finally:
            conn.close()
