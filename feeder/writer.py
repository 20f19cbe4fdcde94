"""Batched, retried writes to the index; acknowledged batches go to the ledger."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from clipsearch.datasets.records import Reason, Rejection
from clipsearch.documents import DocumentBatch
from clipsearch.errors import InvalidRequest
from clipsearch.index.base import SearchIndex
from feeder.deadletter import DeadLetters
from feeder.ledger import Ledger

log = logging.getLogger(__name__)


class IndexWriter:
    def __init__(self, index: SearchIndex, ledger: Ledger, dead: DeadLetters, *,
                 batch_size: int, retries: int, retry_base_s: float, max_failed_batches: int,
                 on_done: Callable[[int], None] = lambda n: None) -> None:
        self._index = index
        self._ledger = ledger
        self._dead = dead
        self._batch_size = batch_size
        self._retries = retries
        self._retry_base_s = retry_base_s
        self._max_failed = max_failed_batches
        self._on_done = on_done
        self._pending: list[tuple[DocumentBatch, Sequence[str]]] = []
        self._pending_n = 0
        self._inflight: asyncio.Task[None] | None = None
        self._failed_in_a_row = 0
        self.indexed = 0
        self.aborted: str | None = None

    async def add(self, batch: DocumentBatch, fps: Sequence[str]) -> None:
        """Queue ``batch`` (``fps``: its rows' ledger fingerprints); every ``batch_size``
        queued documents go to the index as one write."""
        if len(fps) != len(batch):
            raise ValueError("add needs one fingerprint per document")
        start = 0
        while start < len(batch):
            take = min(self._batch_size - self._pending_n, len(batch) - start)
            self._pending.append((batch[start:start + take], fps[start:start + take]))
            self._pending_n += take
            start += take
            if self._pending_n >= self._batch_size:
                await self._submit()

    async def _submit(self) -> None:
        """Start writing the pending batch. One write is in flight at a time: while the
        engine commits it (in its own threads), the caller builds the next batch."""
        parts, self._pending, self._pending_n = self._pending, [], 0
        batch = DocumentBatch.concat([b for b, _ in parts])
        fps = [fp for _, part_fps in parts for fp in part_fps]
        await self._wait()
        self._inflight = asyncio.create_task(self._write(batch, fps))

    async def _wait(self) -> None:
        if self._inflight is not None:
            task, self._inflight = self._inflight, None
            await task

    async def flush(self) -> None:
        """Write what is pending and wait until every write is acknowledged (or reported)."""
        if self._pending:
            await self._submit()
        await self._wait()

    def _fail(self, batch: DocumentBatch, reason: Reason, detail: str) -> None:
        for f in batch.fields:
            self._dead.add(Rejection(id=f.id, file=f.image_uri, reason=reason, detail=detail))
        self._on_done(len(batch))

    async def _write(self, batch: DocumentBatch, fps: Sequence[str]) -> None:
        if self.aborted:
            self._fail(batch, Reason.not_attempted, self.aborted)
            return
        error: Exception | None = None
        for attempt in range(self._retries + 1):
            try:
                await self._index.upsert_batch(batch)
                error = None
                break
            except InvalidRequest as exc:  # the data, not the engine: retrying cannot help
                error = exc
                break
            except Exception as exc:  # any engine failure is retried, then reported
                error = exc
                if attempt < self._retries:
                    delay = self._retry_base_s * 2**attempt
                    log.warning("index write failed (%s); retry %d/%d in %.1f s",
                                exc, attempt + 1, self._retries, delay)
                    await asyncio.sleep(delay)
        if error is None:
            self._ledger.append(zip(batch.ids, fps, strict=True))
            self.indexed += len(batch)
            self._failed_in_a_row = 0
            self._on_done(len(batch))
            return
        if isinstance(error, InvalidRequest) and len(batch) > 1:
            half = len(batch) // 2  # isolate the documents the index refuses
            await self._write(batch[:half], fps[:half])
            await self._write(batch[half:], fps[half:])
            return
        detail = f"{type(error).__name__}: {error}"
        self._fail(batch, Reason.index_error, detail)
        if not isinstance(error, InvalidRequest):
            self._failed_in_a_row += 1
            if self._failed_in_a_row >= self._max_failed:
                self.aborted = (f"{self._failed_in_a_row} index writes in a row failed "
                                f"after retries; last: {detail}")
