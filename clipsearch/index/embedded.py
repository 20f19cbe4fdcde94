"""The embedded index engine: one LanceDB table on local disk behind ``SearchIndex``.

For one machine without Docker (laptop, CI, tests, ``make demo``). Uses LanceDB's async API
(FTS included), so no call blocks the event loop. Facts this relies on (checked on 0.40):

* Every write (merge_insert, delete) is an atomic commit to a new table version; readers keep
  serving the version they hold and see new ones on their next call (read consistency
  interval 0: each call checks for a newer version, ~0.1 ms), also from another process.
* Rows written after an index was built are still searched, by a flat scan: a document is
  findable by text and by vector right after ``upsert``. BM25 statistics (N, average length,
  document frequencies) are only exact after ``flush()``, which runs ``optimize()`` (compaction,
  new rows folded into the scalar and vector indexes) and rebuilds the FTS index.
* The ANN index (IVF_HNSW_SQ, cosine) is built in ``flush()`` once the table holds
  ``vector_index_min_rows`` rows; below that vector search is an exact flat scan.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import lancedb
import numpy as np
from lancedb.index import FTS, Bitmap, BTree, IvfHnswSq
from lancedb.table import AsyncTable

from clipsearch.documents import DocumentBatch, ImageDocument
from clipsearch.errors import BackendError
from clipsearch.index.embedded_duplicates import DuplicateReport, check_duplicates
from clipsearch.index.embedded_faults import probe_read, storage_faults, unavailable
from clipsearch.index.embedded_filters import filters_sql, in_list
from clipsearch.index.embedded_pending import PendingFlushMarker
from clipsearch.index.embedded_schema import (
    CAPTION_TEXT,
    EMBEDDING,
    FIELD_COLUMNS,
    ID,
    LABEL_COLUMNS,
    SUMMARY,
    document_from_row,
    embeddings_of,
    has_summary,
    schema_dim,
    table_schema,
    to_arrow,
)
from clipsearch.index.embedded_search import EngineOptions, run_search
from clipsearch.search import Filters, SearchPlan, SearchResult
from clipsearch.settings import Settings

log = logging.getLogger(__name__)


def fts_config() -> FTS:
    """English stemming, stop words kept, lower-cased: the linguistics of the Vespa schema."""
    return FTS(stem=True, remove_stop_words=False, lower_case=True, language="English")


WRITE_BATCH = 2_000
ID_CHUNK = 1_000


def _chunks(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


class EmbeddedIndex:
    """``SearchIndex`` on a LanceDB table under ``path`` (created on first use)."""

    def __init__(
        self,
        path: Path,
        *,
        table: str = "images",
        dim: int = 512,
        hnsw_ef: int = 300,
        vector_index_min_rows: int = 50_000,
        write_batch: int = WRITE_BATCH,
        metadata_cache_mb: int = 64,
    ) -> None:
        self._path = Path(path)
        self._metadata_cache_bytes = max(1, metadata_cache_mb) << 20
        self._table_name = table
        self._dim = dim
        self._options = EngineOptions(dim=dim, hnsw_ef=hnsw_ef)
        self._vector_index_min_rows = vector_index_min_rows
        self._write_batch = max(1, write_batch)
        self._conn: lancedb.AsyncConnection | None = None
        self._table: AsyncTable | None = None
        self._opening: asyncio.Lock | None = None
        self._pending = PendingFlushMarker(self._path / f"{table}.flush-pending")

    @classmethod
    def from_settings(cls, settings: Settings) -> EmbeddedIndex:
        return cls(
            settings.index_dir,
            table=settings.table,
            dim=settings.embedding_dim,
            hnsw_ef=settings.hnsw_ef,
            vector_index_min_rows=settings.vector_index_min_rows,
            metadata_cache_mb=settings.lancedb_metadata_cache_mb,
        )

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def path(self) -> Path:
        return self._path

    # --- lifecycle -------------------------------------------------------------------

    async def _open(self) -> AsyncTable:
        if self._table is not None:
            return self._table
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:  # one connection even when the first calls are concurrent
            if self._table is not None:
                return self._table
            return await self._connect()

    async def _connect(self) -> AsyncTable:
        try:
            self._path.mkdir(parents=True, exist_ok=True)
            # A bounded metadata cache: every write of a feed is a table version, and LanceDB
            # caches each version's manifest (whose size grows with the fragments), so an
            # uncapped cache grows with the square of the writes (~76 MiB after 90k
            # documents written 256 at a time; 16 MiB cap: 0.4 KiB per document).
            conn = await lancedb.connect_async(
                str(self._path), read_consistency_interval=timedelta(0),
                session=lancedb.Session(metadata_cache_size_bytes=self._metadata_cache_bytes),
            )
            table = await self._open_or_create(conn)
            schema = await table.schema()
            stored_dim = schema_dim(schema)
        except (OSError, RuntimeError) as exc:
            raise unavailable(exc, f"opening {self._path}") from exc
        if stored_dim != self._dim:
            table.close()
            log.error("the index at %s stores %d-d embeddings, %d-d are configured",
                      self._path, stored_dim, self._dim)
            raise BackendError(  # no local path for clients (issue 16); the log has it
                f"the index stores {stored_dim}-d embeddings but "
                f"{self._dim}-d are configured (CLIPSEARCH_EMBEDDING_DIM); re-index or use the "
                "matching model",
                reason="dimension_mismatch",
            )
        await self._ensure_indexes(table)
        if not has_summary(schema):
            log.warning("the index at %s predates the summary column: search pages are read "
                        "column by column (slower); re-create it (e.g. feed --from-embeddings "
                        "into an empty data dir) to get it", self._path)
        self._options = dataclasses.replace(self._options, summary=has_summary(schema))
        self._conn, self._table = conn, table
        return table

    async def _open_or_create(self, conn: lancedb.AsyncConnection) -> AsyncTable:
        try:
            return await conn.open_table(self._table_name)
        except ValueError:  # LanceDB's "table not found"; a racing creator is fine too
            return await conn.create_table(
                self._table_name, schema=table_schema(self._dim), exist_ok=True
            )

    async def _ensure_indexes(self, table: AsyncTable) -> None:
        """FTS on the caption text, btree on id, bitmaps on the labels (cheap when empty)."""
        present = {tuple(ix.columns) for ix in await table.list_indices()}
        if (CAPTION_TEXT,) not in present:
            await table.create_index(CAPTION_TEXT, config=fts_config())
        if (ID,) not in present:
            await table.create_index(ID, config=BTree())
        for column in LABEL_COLUMNS:
            if (column,) not in present:
                await table.create_index(column, config=Bitmap())

    @storage_faults
    async def has_vector_index(self) -> bool:
        """Whether the ANN index exists (built by ``flush`` once the table is large enough)."""
        table = await self._open()
        return any(tuple(ix.columns) == (EMBEDDING,) for ix in await table.list_indices())

    async def ensure_ready(self) -> None:
        await self._open()

    @storage_faults
    async def ping(self) -> None:
        """Reads a few rows spread over the table (embedding and fields), not just the
        manifest: a missing or truncated data file fails here (``embedded_faults``)."""
        table = await self._open()
        columns = [ID, EMBEDDING] + ([SUMMARY] if self._options.summary else [])
        await probe_read(table, columns)

    async def close(self) -> None:
        if self._table is not None:
            self._table.close()
        if self._conn is not None:
            self._conn.close()
        self._table, self._conn = None, None

    # --- writes ----------------------------------------------------------------------

    async def upsert(self, docs: Sequence[ImageDocument]) -> int:
        return await self.upsert_batch(DocumentBatch.from_documents(docs, dim=self._dim))

    @storage_faults
    async def upsert_batch(self, batch: DocumentBatch) -> int:
        batch.check_dim(self._dim)
        unique = batch.dedupe_last()
        if not len(unique):
            return 0
        table = await self._open()  # first: the table's schema says whether it has a summary
        parts = [
            to_arrow(unique[i : i + self._write_batch], self._dim, summary=self._options.summary)
            for i in range(0, len(unique), self._write_batch)
        ]  # all converted before the first write
        self._pending.mark()
        for part in parts:
            await (
                table.merge_insert(ID)
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute(part)
            )
        return len(unique)

    @storage_faults
    async def delete(self, ids: Sequence[str]) -> int:
        existing = await self.existing_ids(ids)
        if not existing:
            return 0
        table = await self._open()
        self._pending.mark()
        for chunk in _chunks(sorted(existing), ID_CHUNK):
            await table.delete(in_list(ID, chunk))
        return len(existing)

    @storage_faults
    async def flush(self) -> None:
        """Compact, refresh the indexes, build the ANN index once the table is large enough.

        ``optimize()`` folds new rows into the scalar and vector indexes, but an FTS index
        keeps counting rows deleted or replaced after it was built in its BM25 statistics
        (measured on LanceDB 0.40), so the FTS index is rebuilt here: it is cheap (~0.5 s for
        50k documents of 50 tokens) next to the ANN index, which is only updated.
        """
        table = await self._open()
        await table.optimize()
        await table.create_index(CAPTION_TEXT, config=fts_config(), replace=True)
        await self._ensure_indexes(table)
        if (
            not await self.has_vector_index()
            and await table.count_rows() >= self._vector_index_min_rows
        ):
            await table.create_index(EMBEDDING, config=IvfHnswSq(distance_type="cosine"))
        self._pending.clear()

    @storage_faults
    async def flush_pending(self) -> bool:
        """Whether writes wait for ``flush``: a writer stopped between its last write and
        the end of its flush (the marker), or rows the FTS index has not seen."""
        if self._pending.exists():
            return True
        table = await self._open()
        for ix in await table.list_indices():
            if tuple(ix.columns) == (CAPTION_TEXT,):
                stats = await table.index_stats(ix.name)
                return bool(stats is not None and stats.num_unindexed_rows > 0)
        return False

    @storage_faults
    async def check_duplicates(self, *, repair: bool = False) -> DuplicateReport:
        """Ids stored more than once; with ``repair`` every row of them but the newest is
        deleted (hold the writer lock, ``clipsearch.index.writer_lock``)."""
        report = await check_duplicates(await self._open(), repair=repair,
                                        before_delete=self._pending.mark)
        if report.removed_rows:
            await self.flush()
        return report

    # --- reads -----------------------------------------------------------------------

    @storage_faults
    async def get(self, doc_id: str) -> ImageDocument | None:
        table = await self._open()
        rows = await (
            table.query()
            .where(in_list(ID, [doc_id]))
            .select([*FIELD_COLUMNS, EMBEDDING])
            .limit(1)
            .to_list()
        )
        return document_from_row(rows[0]) if rows else None

    @storage_faults
    async def embeddings_of(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored embeddings of ``ids`` (absent ids left out) in one read per
        ``ID_CHUNK`` ids: a LanceDB read costs about the same for one row or a thousand."""
        wanted = sorted(set(ids))
        table = await self._open()
        found: dict[str, np.ndarray] = {}
        for chunk in _chunks(wanted, ID_CHUNK):
            rows = await (table.query().where(in_list(ID, chunk)).select([ID, EMBEDDING])
                          .limit(len(chunk) * 2).to_arrow())  # *2: room for a duplicate row
            if rows.num_rows:
                found.update(zip(rows.column(ID).to_pylist(), embeddings_of(rows), strict=True))
        return found

    @storage_faults
    async def existing_ids(self, ids: Sequence[str]) -> set[str]:
        wanted = sorted(set(ids))
        if not wanted:
            return set()
        table = await self._open()
        found: set[str] = set()
        for chunk in _chunks(wanted, ID_CHUNK):
            rows = await (
                table.query().where(in_list(ID, chunk)).select([ID]).limit(len(chunk)).to_arrow()
            )
            found.update(rows.column(ID).to_pylist())
        return found

    @storage_faults
    async def count(self, filters: Filters | None = None) -> int:
        table = await self._open()
        return await table.count_rows(filters_sql(filters))

    @storage_faults
    async def search(self, plan: SearchPlan) -> SearchResult:
        table = await self._open()
        return await run_search(table, plan, self._options)
