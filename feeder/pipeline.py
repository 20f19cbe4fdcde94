"""The feed: plan -> reuse or encode (workers + batches) -> shard -> index, resumably.

Order of durability: an image's embedding is written to a shard before its document is sent to
the index, and a document is entered in the ledger only after the index acknowledged it. A
rerun therefore encodes only what no shard holds (same id, bytes and model) and feeds only what
the index lacks or holds in another version, whatever moment the previous run was killed at.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import aclosing
from datetime import UTC, datetime
from itertools import chain, islice
from pathlib import Path
from typing import TypeVar

import numpy as np
from tqdm import tqdm

from clipsearch.datasets.readers import read_source
from clipsearch.datasets.records import Reason, Rejection
from clipsearch.documents import DocumentBatch, DocumentFields
from clipsearch.errors import ClipsearchError, InvalidRequest
from clipsearch.index.base import SearchIndex
from clipsearch.index.maintenance import complete_pending_flush
from clipsearch.models.identity import space_of
from clipsearch.settings import Settings
from feeder.deadletter import DeadLetters
from feeder.encoders import FeedEncoder
from feeder.generation_feed import claim_for_feed
from feeder.heap import fix_mmap_threshold
from feeder.ledger import Ledger, fingerprint, ledger_path
from feeder.plan import Planned, Planner, select
from feeder.report import FeedReport
from feeder.request import FeedRequest
from feeder.source_stream import Reusable, SourceStream
from feeder.store import EmbeddingStore, StoredRow
from feeder.writer import IndexWriter

log = logging.getLogger(__name__)
T = TypeVar("T")
EXISTS_CHUNK = 1000
REUSE_CHUNK = 4096


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def default_dead_letter(settings: Settings) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return settings.data_dir / "feeder" / f"dead-letter-{stamp}.jsonl"


def check_dim(model_dim: int, index: SearchIndex, what: str) -> None:
    if model_dim != index.dim:
        raise InvalidRequest(
            f"{what} makes {model_dim}-d embeddings but the index stores {index.dim}-d ones; "
            "set CLIPSEARCH_EMBEDDING_DIM (and use a fresh index) to change it",
            reason="vector_dimension")


async def present_ids(index: SearchIndex, ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for chunk in chunks(ids, EXISTS_CHUNK):
        found |= await index.existing_ids(chunk)
    return found


async def still_indexed(index: SearchIndex, fed: dict[str, str],
                        docs: Sequence[tuple[str, str]]) -> set[str]:
    """Ids of ``(id, fingerprint)`` pairs that this feeder wrote in this exact version AND
    the index still holds. Only ids the ledger vouches for are looked up: anything else is
    written anyway, so a first feed asks the index nothing."""
    vouched = [doc_id for doc_id, fp in docs if fed.get(doc_id) == fp]
    if not vouched:
        return set()
    return await present_ids(index, vouched)


class FeedRun:
    """One run of the feeder; ``run_*`` return the report."""

    def __init__(self, settings: Settings, request: FeedRequest, index: SearchIndex) -> None:
        self.settings = settings
        self.request = request
        self.index = index
        self.dead = DeadLetters(request.dead_letter or default_dead_letter(settings))
        self.ledger = Ledger(ledger_path(settings))
        self.report = FeedReport(source=str(request.source or request.from_embeddings),
                                 dead_letter=self.dead.path)
        self.bar = tqdm(total=0, unit="img", disable=not request.progress, dynamic_ncols=True,
                        desc="feed")
        self.writer = IndexWriter(
            index, self.ledger, self.dead, batch_size=request.feed_batch_size,
            retries=request.retries, retry_base_s=request.retry_base_s,
            max_failed_batches=request.max_failed_batches, on_done=self.bar.update)
        self._fed: dict[str, str] | None = None  # the ledger, once a row is reusable
        self._t0 = time.perf_counter()

    # --- shared ---------------------------------------------------------------------------
    def _skip(self, rejection: Rejection) -> None:
        self.dead.add(rejection)
        self.bar.update(1)

    async def _feed_docs(self, fields: Sequence[DocumentFields], fps: Sequence[str],
                         vectors: np.ndarray) -> None:
        """Send documents (fields + vectors); ``fps`` are their ledger fingerprints. A row
        whose vector is not a finite unit vector is reported, not sent."""
        batch, rejected = DocumentBatch.usable(fields, vectors)
        if rejected:
            for row in rejected:
                f = fields[row]
                self._skip(Rejection(id=f.id, file=f.image_uri, reason=Reason.encoder_error,
                                     detail="embedding is not a finite unit vector"))
            dropped = set(rejected)
            fps = [fp for row, fp in enumerate(fps) if row not in dropped]
        await self.writer.add(batch, fps)

    async def _finish(self, model_id: str) -> FeedReport:
        await self.writer.flush()
        if self.writer.indexed:
            await self.index.flush()
        else:  # a previous run may have stopped between its last write and its flush
            self.report.flushed_pending = await complete_pending_flush(self.index)
        self.bar.close()
        self.dead.close()
        r = self.report
        r.model_id = model_id
        r.indexed = self.writer.indexed
        r.skipped = self.dead.skipped_total
        r.skipped_by_reason = dict(self.dead.skipped)
        r.repaired_by_reason = dict(self.dead.repaired)
        r.aborted = self.writer.aborted
        r.seconds = time.perf_counter() - self._t0
        return r

    # --- from a dataset ---------------------------------------------------------------------
    async def run_source(self, encoder: FeedEncoder) -> FeedReport:
        req = self.request
        assert req.source is not None
        check_dim(encoder.dim, self.index, f"model {encoder.model_id!r}")
        await claim_for_feed(self.index, encoder, model_id=encoder.model_id, dim=encoder.dim)
        fix_mmap_threshold(req.mmap_threshold)  # feeder/heap.py: RSS flat over a long feed
        space = space_of(encoder)
        store = EmbeddingStore(req.shard_dir(self.settings), space=space)
        self.report.embeddings_dir = store.root
        planner = Planner(self.dead, encoder.model_id, shard=req.shard_spec())
        items = select(read_source(req.source, req.format, dataset=req.dataset,
                                   images=req.images_dir, classes=req.classes_dir),
                       split=req.split, limit=req.limit)
        stream = SourceStream(planner, planner.plan(items),
                              catalog={} if req.reencode else store.catalog(),
                              model_id=encoder.model_id, space=space,
                              batch_size=req.batch_size, window=req.window,
                              on_read=self._rows_read)
        while not stream.exhausted:  # one segment per window of reusable rows (source_stream)
            await self._encode_and_feed(stream, encoder, store)
            await self._feed_reused(stream.take_reusable(), store)
        self.report.runtime = encoder.runtime  # after: a lazy encoder resolves it on first use
        return await self._finish(encoder.model_id)

    def _rows_read(self, read: int, skipped: int) -> None:
        """``read`` more source rows, ``skipped`` of them rejected while planning: the
        progress bar's total grows as the source is read."""
        self.report.read += read
        self.bar.total += read
        if skipped:
            self.bar.update(skipped)

    async def _feed_reused(self, rows: list[Reusable], store: EmbeddingStore) -> None:
        """Rows whose embedding a shard holds: those the index still holds in this version
        (the ledger vouches, the index confirms) are counted, the others fed from the shard."""
        if not rows:
            return
        if self._fed is None:  # read once, on the first reusable row (a fresh feed never)
            self._fed = self.ledger.load()
        for chunk in chunks(rows, REUSE_CHUNK):
            fps = [fingerprint(r.planned.fields, r.planned.content_hash) for r in chunk]
            present = await still_indexed(self.index, self._fed,
                                          [(r.planned.id, fp) for r, fp in zip(chunk, fps,
                                                                               strict=True)])
            todo = [(r, fp) for r, fp in zip(chunk, fps, strict=True)
                    if r.planned.id not in present]
            self.report.already_indexed += len(chunk) - len(todo)
            self.bar.update(len(chunk) - len(todo))
            self.report.reused_embeddings += len(todo)
            if not todo:
                continue
            vectors = store.vectors({r.planned.id: r.entry for r, _ in todo})
            await self._feed_docs([r.planned.fields for r, _ in todo], [fp for _, fp in todo],
                                  np.stack([vectors[r.planned.id] for r, _ in todo]))

    async def _encode_and_feed(self, stream: SourceStream, encoder: FeedEncoder,
                               store: EmbeddingStore) -> None:
        """Encode one segment of the stream in batches (the encoder pipelines them: decoding
        ahead, workers or requests in parallel, results in order); refused images go to the
        dead letters. Reusable rows read meanwhile are fed between batches."""
        req = self.request
        batches = stream.batches()
        first = next(batches, None)  # planning it may end the segment with nothing to encode
        if first is None:
            return
        buffer: list[tuple[Planned, np.ndarray]] = []
        last_shard = time.monotonic()
        outcomes = encoder.encode_batches(chain([first], batches))
        async with aclosing(outcomes):
            async for encoded in outcomes:
                for p, out in zip(stream.answered(), encoded, strict=True):
                    if out.vector is not None:
                        buffer.append((p, out.vector))
                    else:
                        self._skip(Rejection(id=p.id, file=str(p.file),
                                             reason=out.reason or Reason.encoder_error,
                                             detail=out.detail))
                if len(buffer) >= req.shard_docs or time.monotonic() - last_shard > (
                        req.shard_seconds):
                    await self._shard_and_feed(buffer, store)
                    buffer, last_shard = [], time.monotonic()
                if stream.waiting >= min(req.window, REUSE_CHUNK):
                    await self._feed_reused(stream.take_reusable(), store)
        if buffer:
            await self._shard_and_feed(buffer, store)

    async def _shard_and_feed(self, buffer: list[tuple[Planned, np.ndarray]],
                              store: EmbeddingStore) -> None:
        fields = [p.fields for p, _ in buffer]
        hashes = [p.content_hash for p, _ in buffer]
        vectors = np.stack([v for _, v in buffer]).astype(np.float32)
        store.write(fields, hashes, vectors)
        self.report.encoded += len(buffer)
        await self._feed_docs(fields, [fingerprint(f, h) for f, h in zip(fields, hashes,
                                                                          strict=True)],
                              vectors)

    # --- from precomputed shards ------------------------------------------------------------
    async def run_shards(self) -> FeedReport:
        req = self.request
        assert req.from_embeddings is not None
        store = EmbeddingStore(req.from_embeddings)
        if not store.shards():
            raise InvalidRequest(f"no embedding shards (shard-*.parquet) in {store.root}",
                                 reason="no_shards")
        self.report.embeddings_dir = store.root
        catalog = store.catalog()
        models = {e.model_id for e in catalog.values()}
        model_id = req.model_id or (next(iter(models)) if len(models) == 1 else None)
        if model_id is None:
            raise InvalidRequest(f"{store.root} holds embeddings of several models "
                                 f"({', '.join(sorted(models))}); choose one with --model-id",
                                 reason="mixed_models")
        fed = self.ledger.load()
        shard = req.shard_spec()
        rows: Iterator[StoredRow] = (r for r in store.rows(catalog) if r.fields.model_id == model_id
                and (req.split is None or r.fields.split == req.split)
                and (req.dataset is None or r.fields.dataset == req.dataset)
                and (shard is None or shard.owns(r.fields.id)))
        if req.limit is not None:
            rows = islice(rows, req.limit)
        checked = False
        for chunk in chunks(rows, REUSE_CHUNK):
            if not checked:
                check_dim(int(chunk[0].vector.shape[0]), self.index, f"{store.root}")
                checked = True
            self.report.read += len(chunk)
            self.bar.total += len(chunk)
            fps = [(r.fields.id, fingerprint(r.fields, r.content_hash)) for r in chunk]
            present = await still_indexed(self.index, fed, fps)
            todo = [(r, fp) for r, (_, fp) in zip(chunk, fps, strict=True)
                    if r.fields.id not in present]
            self.report.already_indexed += len(chunk) - len(todo)
            self.bar.update(len(chunk) - len(todo))
            self.report.reused_embeddings += len(todo)
            if todo:
                await self._feed_docs([r.fields for r, _ in todo], [fp for _, fp in todo],
                                      np.stack([r.vector for r, _ in todo]))
        return await self._finish(model_id)


async def feed(settings: Settings, request: FeedRequest, index: SearchIndex,
               encoder: FeedEncoder | None) -> FeedReport:
    run = FeedRun(settings, request, index)
    try:
        if request.from_embeddings is not None:
            return await run.run_shards()
        if encoder is None:
            raise ClipsearchError("feeding a dataset needs an encoder", reason="no_encoder")
        return await run.run_source(encoder)
    finally:
        run.bar.close()
        run.dead.close()
