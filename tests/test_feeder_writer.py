"""``IndexWriter``: batches of ``feed_batch_size`` across ``add`` calls, retries, bisection of
refused batches, ledger and dead letters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clipsearch.documents import DocumentBatch, DocumentFields
from clipsearch.embeddings import l2_normalize
from clipsearch.errors import InvalidRequest
from feeder.deadletter import DeadLetters
from feeder.ledger import Ledger
from feeder.writer import IndexWriter
from tests.feeder_fixtures import MemoryIndex

DIM = 4


def batch(ids: list[str]) -> DocumentBatch:
    vectors = l2_normalize(np.random.default_rng(len(ids)).normal(size=(len(ids), DIM)))
    return DocumentBatch([DocumentFields(id=i, dataset="t", image_uri=f"/{i}.jpg")
                          for i in ids], vectors)


class PickyIndex(MemoryIndex):
    """Refuses (InvalidRequest) any batch holding an id that starts with ``bad``; records
    the size of every batch it was sent."""

    def __init__(self, **kw: object) -> None:
        super().__init__(dim=DIM, **kw)  # type: ignore[arg-type]
        self.sizes: list[int] = []

    async def upsert_batch(self, batch):  # type: ignore[no-untyped-def]
        self.sizes.append(len(batch))
        if any(i.startswith("bad") for i in batch.ids):
            raise InvalidRequest("refused (test)")
        return await super().upsert_batch(batch)


def writer(index: MemoryIndex, tmp: Path, **kw: object) -> tuple[IndexWriter, Ledger, Path]:
    ledger = Ledger(tmp / "ledger.jsonl")
    dead = tmp / "dead.jsonl"
    options: dict[str, object] = dict(batch_size=4, retries=2, retry_base_s=0.0,
                                      max_failed_batches=2)
    options.update(kw)
    return IndexWriter(index, ledger, DeadLetters(dead), **options), ledger, dead  # type: ignore[arg-type]


async def test_batches_span_add_calls_and_fingerprints_follow_rows(tmp_path: Path) -> None:
    index = PickyIndex()
    w, ledger, _ = writer(index, tmp_path)
    ids = [f"t:{i}" for i in range(10)]
    await w.add(batch(ids[:3]), [f"fp{i}" for i in range(3)])
    await w.add(batch(ids[3:8]), [f"fp{i}" for i in range(3, 8)])
    await w.add(batch(ids[8:]), [f"fp{i}" for i in range(8, 10)])
    await w.flush()
    assert index.sizes == [4, 4, 2] and w.indexed == 10
    assert ledger.load() == {f"t:{i}": f"fp{i}" for i in range(10)}
    assert set(index.docs) == set(ids)
    with pytest.raises(ValueError):
        await w.add(batch(["t:x"]), [])


async def test_a_refused_batch_is_bisected_down_to_the_refused_documents(tmp_path: Path) -> None:
    index = PickyIndex()
    w, ledger, dead = writer(index, tmp_path, batch_size=8)
    ids = ["t:0", "t:1", "bad:2", "t:3", "t:4", "t:5", "bad:6", "t:7"]
    await w.add(batch(ids), [f"fp-{i}" for i in ids])
    await w.flush()
    good = [i for i in ids if not i.startswith("bad")]
    assert sorted(index.docs) == sorted(good) and w.indexed == len(good)
    assert set(ledger.load()) == set(good)
    rows = [json.loads(line) for line in dead.read_text().splitlines()]
    assert sorted((r["id"], r["reason"], r["file"]) for r in rows) == [
        ("bad:2", "index_error", "/bad:2.jpg"), ("bad:6", "index_error", "/bad:6.jpg")]
    assert w.aborted is None  # refused data never aborts the run


async def test_engine_failures_are_retried_then_abort(tmp_path: Path) -> None:
    flaky = PickyIndex(fail_next=2)
    w, ledger, _ = writer(flaky, tmp_path)
    await w.add(batch(["t:0", "t:1"]), ["a", "b"])
    await w.flush()
    assert flaky.attempts == 3 and w.indexed == 2 and ledger.load() == {"t:0": "a", "t:1": "b"}

    down = PickyIndex(fail_next=-1)
    w, ledger, dead = writer(down, tmp_path / "down")
    await w.add(batch([f"t:{i}" for i in range(12)]), [str(i) for i in range(12)])
    await w.flush()
    assert w.aborted and "2 index writes in a row failed" in w.aborted
    assert w.indexed == 0 and ledger.load() == {} and down.attempts == 2 * 3
    reasons = [json.loads(line)["reason"] for line in dead.read_text().splitlines()]
    assert reasons == ["index_error"] * 8 + ["not_attempted"] * 4


def test_ledger_lines_are_json_objects(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.jsonl")
    odd = ['a"b\\c', "é\u2028\x00", "t:1"]
    ledger.append((i, f"fp{n}") for n, i in enumerate(odd))
    lines = ledger.path.read_text(encoding="utf-8").splitlines()
    assert lines == [json.dumps({"id": i, "fp": f"fp{n}"}) for n, i in enumerate(odd)]
    assert ledger.load() == {i: f"fp{n}" for n, i in enumerate(odd)}
