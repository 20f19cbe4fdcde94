"""The feed reads its source as the encoder needs it (feeder/source_stream.py): a small window
and small batches give the same index, counts and dead letters as the defaults; duplicates
across windows are still caught; an interrupted windowed feed, rerun, ends with exactly the
source's documents."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pytest

from clipsearch.datasets.records import SourceRecord
from clipsearch.embeddings import Embeddings
from clipsearch.models.model import ClipEncoder
from clipsearch.models.preprocess import PreprocessSpec
from feeder.commands import run_feed_async
from feeder.deadletter import DeadLetters
from feeder.ledger import Ledger
from feeder.plan import Planned, Planner
from feeder.report import FeedReport
from feeder.source_stream import SourceStream
from feeder.store import StoredEntry
from tests.feeder_fixtures import (
    feed_request,
    index_state,
    make_generic,
    settings_for,
    stored_embeddings,
)

SMALL = {"window": 2, "batch_size": 3, "shard_docs": 2, "feed_batch_size": 2}


def counts(r: FeedReport) -> tuple[object, ...]:
    return (r.read, r.indexed, r.already_indexed, r.skipped, r.encoded, r.reused_embeddings,
            r.skipped_by_reason, r.repaired_by_reason)


def dead_rows(path: Path) -> list[tuple[str, str]]:
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    return sorted((str(r["id"]), str(r["reason"])) for r in rows)


async def test_small_window_gives_the_default_index(tmp_path: Path, tiny_clip_dir: Path,
                                                    clip) -> None:
    exp = make_generic(tmp_path / "src", n_good=9)  # a duplicate id near the end of the file
    default_s = settings_for(tmp_path / "a", tiny_clip_dir)
    small_s = settings_for(tmp_path / "b", tiny_clip_dir)
    default = await run_feed_async(default_s, feed_request(exp.source, tmp_path / "a.jsonl"),
                                   encoder=clip)
    small = await run_feed_async(small_s, feed_request(exp.source, tmp_path / "b.jsonl",
                                                       **SMALL), encoder=clip)
    assert counts(small) == counts(default) and small.consistent
    assert small.skipped_by_reason["duplicate_id"] == 1
    assert dead_rows(tmp_path / "b.jsonl") == dead_rows(tmp_path / "a.jsonl")
    assert await index_state(small_s, exp.good) == (len(exp.good), set(exp.good))
    a = await stored_embeddings(default_s, exp.good)
    b = await stored_embeddings(small_s, exp.good)
    assert all(np.allclose(a[i], b[i], atol=1e-5) for i in exp.good)

    # rerun with the small window: every row is reusable, read in windows of two
    again = await run_feed_async(small_s, feed_request(exp.source, tmp_path / "c.jsonl",
                                                       **SMALL), encoder=clip)
    assert (again.read, again.already_indexed, again.encoded, again.indexed) == (
        default.read, len(exp.good), 0, 0)
    assert again.skipped_by_reason == default.skipped_by_reason  # the duplicate, again


async def test_reusable_and_new_rows_interleaved(tmp_path: Path, tiny_clip_dir: Path,
                                                 clip) -> None:
    """Half the rows (split train) are indexed first: the full feed then alternates between
    rows to feed from the shards and rows to encode, across many windows and batches."""
    exp = make_generic(tmp_path / "src", n_good=10)
    s = settings_for(tmp_path, tiny_clip_dir)
    train = await run_feed_async(s, feed_request(exp.source, tmp_path / "t.jsonl",
                                                 split="train"), encoder=clip)
    fresh = s.model_copy(update={"table": "other"})  # the same shards, an empty index
    both = await run_feed_async(fresh, feed_request(
        exp.source, tmp_path / "d.jsonl", embeddings_dir=s.data_dir / "embeddings",
        **{**SMALL, "batch_size": 2}), encoder=clip)
    assert both.consistent and both.skipped_by_reason["duplicate_id"] == 1
    assert both.reused_embeddings == train.indexed and 0 < train.indexed < len(exp.good)
    assert both.encoded == len(exp.good) - train.indexed
    assert await index_state(fresh, exp.good) == (len(exp.good), set(exp.good))


class Interrupted(Exception):
    pass


class StopsAfter:
    """The tiny CLIP, but the run stops (like a kill) at its ``n + 1``-th pixel batch."""

    def __init__(self, clip: ClipEncoder, n: int) -> None:
        self.clip, self.n = clip, n

    @property
    def model_id(self) -> str:
        return self.clip.model_id

    @property
    def dim(self) -> int:
        return self.clip.dim

    @property
    def space_id(self) -> str | None:
        return self.clip.space_id

    @property
    def preprocess_spec(self) -> PreprocessSpec:
        return self.clip.preprocess_spec

    def embed_pixels(self, batch: np.ndarray) -> Embeddings:
        if self.n == 0:
            raise Interrupted
        self.n -= 1
        return self.clip.embed_pixels(batch)


async def test_interrupted_windowed_feed_rerun_ends_with_the_source(
        tmp_path: Path, tiny_clip_dir: Path, clip, monkeypatch: pytest.MonkeyPatch) -> None:
    exp = make_generic(tmp_path / "src", n_good=12)
    s = settings_for(tmp_path, tiny_clip_dir)
    req = feed_request(exp.source, tmp_path / "dead.jsonl", **SMALL)

    # 1: stopped in the encoder after three batches (their shards written, some fed)
    with pytest.raises(Interrupted):
        await run_feed_async(s, req, encoder=StopsAfter(clip, 3))
    count, _ = await index_state(s, exp.good)
    assert 0 < count < len(exp.good)

    # 2: stopped while writing: the index acknowledged a batch the ledger never heard of
    real_append, appends = Ledger.append, [0]

    def failing_append(self: Ledger, entries: Iterable[tuple[str, str]]) -> None:
        appends[0] += 1
        if appends[0] == 3:
            raise Interrupted
        real_append(self, entries)

    monkeypatch.setattr(Ledger, "append", failing_append)
    with pytest.raises(Interrupted):
        await run_feed_async(s, req, encoder=clip)
    monkeypatch.setattr(Ledger, "append", real_append)

    # 3: runs to the end, resuming from the shards
    last = await run_feed_async(s, req, encoder=clip)
    assert last.consistent and last.read == exp.rows
    assert last.encoded < len(exp.good)  # resumed, not started over
    assert last.indexed + last.already_indexed == len(exp.good)
    assert last.skipped_by_reason["duplicate_id"] == 1
    assert await index_state(s, exp.good) == (len(exp.good), set(exp.good))


# --- SourceStream on its own: nothing is read before the encoder asks for it -----------------
def records(root: Path, n: int) -> Iterator[SourceRecord]:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        path = root / f"{i}.bin"
        path.write_bytes(bytes([i]) * 10)
        yield SourceRecord(source_id=f"r{i}", file=path, captions=["x"], dataset="s")


def test_source_is_read_only_as_far_as_the_next_batch(tmp_path: Path) -> None:
    planner = Planner(DeadLetters(None), "m")
    pulled: list[Planned] = []

    def planned() -> Iterator[Planned]:
        for p in planner.plan(records(tmp_path, 20)):
            pulled.append(p)
            yield p

    reads: list[tuple[int, int]] = []
    stream = SourceStream(planner, planned(), catalog={}, model_id="m", space=None,
                          batch_size=4, window=3, on_read=lambda r, s: reads.append((r, s)))
    batches = stream.batches()
    first = next(batches)
    assert len(first) == 4 and len(pulled) == 4  # not one row more
    assert [p.id for p in stream.answered()] == [f"s:r{i}" for i in range(4)]
    rest = list(batches)
    assert stream.exhausted and sum(len(b) for b in rest) == 16
    assert sum(r for r, _ in reads) == 20 and all(s == 0 for _, s in reads)


def test_reusable_rows_end_a_segment_at_the_window(tmp_path: Path) -> None:
    planner = Planner(DeadLetters(None), "m")
    rows = list(Planner(DeadLetters(None), "m").plan(records(tmp_path, 7)))
    catalog = {p.id: StoredEntry(p.content_hash, "m", tmp_path / "shard", i)
               for i, p in enumerate(rows) if i != 5}  # all reusable but row 5
    stream = SourceStream(planner, planner.plan(records(tmp_path, 7)), catalog=catalog,
                          model_id="m", space=None, batch_size=4, window=3,
                          on_read=lambda r, s: None)
    assert list(stream.batches()) == [] and not stream.exhausted
    assert [r.planned.id for r in stream.take_reusable()] == ["s:r0", "s:r1", "s:r2"]
    # r3, r4 wait, r5 is handed to the encoder, r6 fills the window: the segment ends there
    assert list(stream.batches()) == [[str(rows[5].file)]] and not stream.exhausted
    assert [r.planned.id for r in stream.take_reusable()] == ["s:r3", "s:r4", "s:r6"]
    assert list(stream.batches()) == [] and stream.exhausted and stream.waiting == 0
