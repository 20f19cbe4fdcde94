"""Fault injection (issue 16): index files removed or damaged, two writers at once, a kill
between the last acknowledged write and the flush. Every fault must be answered as a fault
(503 + Retry-After, a safe message), never a 500, and recover without a restart.

The encoder faults (hung, late, absent) are in ``test_faults_encoder.py``, the body and image
limits in ``test_faults_payloads.py``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from clipsearch.documents import DocumentBatch, DocumentFields, ImageDocument
from clipsearch.embeddings import l2_normalize
from clipsearch.index.embedded import EmbeddedIndex
from clipsearch.index.embedded_schema import to_arrow
from clipsearch.index.maintenance import complete_pending_flush_if_free
from clipsearch.index.writer_lock import WriterBusy, read_holder, writer_lock
from clipsearch.search import Mode, SearchPlan
from clipsearch.settings import Settings
from services.api.app import create_app
from tests.api_fakes import DIM, FakeEmbedder, unit

WORDS = ["river", "forest", "harbour", "airport", "field", "bridge", "desert", "lake"]


def _doc(i: int, *, caption: str | None = None) -> ImageDocument:
    words = " ".join(WORDS[(i * k) % len(WORDS)] for k in (1, 3, 5))
    return ImageDocument(id=f"f:{i:03d}", captions=[caption or f"a {words} near town {i}"],
                         dataset="f", category=WORDS[i % 3], split="test",
                         embedding=unit(i))


DOCS = [_doc(i) for i in range(60)]


def _fed(path: Path, docs: list[ImageDocument] = DOCS) -> EmbeddedIndex:
    async def feed() -> None:
        index = EmbeddedIndex(path, dim=DIM)
        await index.upsert(docs)
        await index.flush()
        await index.close()

    asyncio.run(feed())
    return EmbeddedIndex(path, dim=DIM)


def _client(tmp_path: Path, index: EmbeddedIndex) -> TestClient:
    return TestClient(create_app(Settings(data_dir=tmp_path, embedding_dim=DIM), index=index,
                                 embedder=FakeEmbedder()))


def _is_safe(message: str) -> bool:
    """No absolute path, Rust source location or LanceDB internals in a client message."""
    return "/" not in message and ".rs:" not in message and "lance" not in message.lower()


# --- 1. index unavailable -> 503 + Retry-After, /ready reads, recovery -------------------------

def _rename(root: Path) -> Callable[[], None]:
    moved = root.with_name(root.name + ".moved")
    root.rename(moved)
    return lambda: moved.rename(root)


def _delete(root: Path) -> Callable[[], None]:
    backup = root.with_name(root.name + ".backup")
    shutil.copytree(root, backup)
    shutil.rmtree(root)
    return lambda: shutil.copytree(backup, root)


def _chmod_000(root: Path) -> Callable[[], None]:
    table = root / "images.lance"
    table.chmod(0)
    return lambda: table.chmod(0o755)


def _truncate(root: Path) -> Callable[[], None]:
    data = max((root / "images.lance" / "data").glob("*.lance"), key=lambda p: p.stat().st_size)
    saved = data.read_bytes()
    data.write_bytes(saved[: len(saved) // 2])
    return lambda: data.write_bytes(saved)


FAULTS = {"renamed": _rename, "deleted": _delete, "chmod-000": _chmod_000,
          "truncated": _truncate}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_index_faults_answer_503_and_recover(tmp_path: Path, fault: str) -> None:
    if fault == "chmod-000" and os.geteuid() == 0:
        pytest.skip("running as root: permission bits do not stop root from reading")
    root = tmp_path / "index"
    index = _fed(root)
    requests = [("GET", "/search", {"q": "river", "mode": "lexical"}),
                ("GET", "/search", {"q": "river", "mode": "vector"}),
                ("GET", "/search", {"q": "river", "mode": "hybrid"}),
                ("GET", f"/documents/{DOCS[3].id}", None)]
    with _client(tmp_path, index) as c:
        assert c.get("/ready").status_code == 200
        restore = FAULTS[fault](root)
        try:
            ready = c.get("/ready")
            assert ready.status_code == 503 and ready.headers["retry-after"]
            assert ready.json()["index"].startswith("down: index_unavailable")
            assert _is_safe(ready.json()["index"]), ready.json()
            for method, path, params in requests:
                r = c.request(method, path, params=params)
                if fault == "truncated" and r.status_code == 200:
                    continue  # this read did not touch the damaged bytes (cached pages)
                assert r.status_code == 503, (path, params, r.text)
                assert r.headers["retry-after"] == "5"
                err = r.json()["error"]
                assert err["reason"] == "index_unavailable" and _is_safe(err["message"])
        finally:
            restore()
        assert c.get("/ready").status_code == 200  # no restart needed
        for method, path, params in requests:
            assert c.request(method, path, params=params).status_code == 200


def test_truncated_file_fails_every_vector_search_and_ready(tmp_path: Path) -> None:
    """The issue's case: /ready said ok (documents 2400) while every search failed."""
    root = tmp_path / "index"
    index = _fed(root)
    with _client(tmp_path, index) as c:
        _truncate(root)
        assert c.get("/search", params={"q": "river", "mode": "vector"}).status_code == 503
        assert c.get("/ready").status_code == 503


def test_ready_answers_within_deadline_when_the_index_hangs(tmp_path: Path) -> None:
    index = _fed(tmp_path / "index")

    async def hang() -> None:
        await asyncio.Event().wait()

    index.ping = hang  # type: ignore[method-assign]
    with TestClient(create_app(Settings(data_dir=tmp_path, embedding_dim=DIM,
                                        ready_timeout_s=0.3),
                               index=index, embedder=FakeEmbedder())) as c:
        started = time.monotonic()
        r = c.get("/ready")
        assert r.status_code == 503 and time.monotonic() - started < 2.0
        assert r.json()["index"].startswith("down: timeout") and r.json()["encoder"] == "ok"


# --- 2. one writer at a time; duplicates found, repaired and never served ---------------------

HOLDER = """
import sys
from clipsearch.index.writer_lock import writer_lock
with writer_lock(sys.argv[1], "clipsearch feed (test holder)"):
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture()
def lock_holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the writer lock of ``tmp_path/index`` until its stdin closes."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "index")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


def test_second_writer_fails_with_who_holds_the_lock(tmp_path: Path,
                                                     lock_holder: subprocess.Popen[str]) -> None:
    with pytest.raises(WriterBusy) as info, writer_lock(tmp_path / "index", "second feed"):
        pass
    message = info.value.message
    assert f"pid {lock_holder.pid}" in message and "test holder" in message
    assert "--wait" in message


def test_second_writer_waits_then_proceeds(tmp_path: Path,
                                           lock_holder: subprocess.Popen[str]) -> None:
    said: list[str] = []
    with pytest.raises(WriterBusy, match="gave up"), writer_lock(
            tmp_path / "index", "second", wait=True, timeout_s=0.2, on_wait=said.append):
        pass
    assert said and "waiting" in said[0]
    assert lock_holder.stdin is not None
    lock_holder.stdin.close()  # the holder finishes
    with writer_lock(tmp_path / "index", "second", wait=True, timeout_s=30):
        holder = read_holder(tmp_path / "index")
        assert holder is not None and holder.pid == os.getpid() and holder.command == "second"


def test_a_killed_writer_leaves_no_lock(tmp_path: Path,
                                        lock_holder: subprocess.Popen[str]) -> None:
    lock_holder.kill()
    lock_holder.wait(timeout=30)
    with writer_lock(tmp_path / "index", "after the crash"):
        pass


def test_concurrent_feeds_in_one_data_dir_do_not_both_write(tmp_path: Path) -> None:
    """Two feeds at once: the second one refuses (the race that duplicated ids)."""
    from feeder.commands import run_feed_async
    from feeder.request import FeedRequest
    from feeder.store import EmbeddingStore

    store = EmbeddingStore(tmp_path / "shards")
    vectors = l2_normalize(np.asarray([d.embedding for d in DOCS], np.float32))
    store.write([DocumentFields(id=d.id, captions=d.captions, dataset="f", model_id="m")
                 for d in DOCS], ["h"] * len(DOCS), vectors)
    settings = Settings(data_dir=tmp_path / "data", embedding_dim=DIM)
    request = FeedRequest(from_embeddings=store.root, progress=False)

    async def both() -> list[object]:
        return await asyncio.gather(run_feed_async(settings, request),
                                    run_feed_async(settings, request), return_exceptions=True)

    outcomes = asyncio.run(both())
    busy = [o for o in outcomes if isinstance(o, WriterBusy)]
    assert len(busy) <= 1, outcomes
    assert not [o for o in outcomes if isinstance(o, BaseException) and o not in busy]
    index = EmbeddedIndex(settings.index_dir, dim=DIM)
    report = asyncio.run(index.check_duplicates())
    assert report.rows == len(DOCS) and report.duplicated_ids == 0


def _with_duplicates(root: Path) -> EmbeddedIndex:
    """An index where 20 ids are stored twice, the newer row with another caption (as two
    racing feeders left it)."""
    index = _fed(root)

    async def add_again() -> None:
        table = await index._open()
        newer = [_doc(i, caption=f"newer river row {i}") for i in range(0, 40, 2)]
        await table.add(to_arrow(DocumentBatch.from_documents(newer, dim=DIM), DIM,
                                 summary=True))

    asyncio.run(add_again())
    return index


@pytest.mark.parametrize("mode", ["lexical", "vector", "hybrid"])
def test_pages_never_repeat_an_id_even_if_the_table_does(tmp_path: Path, mode: str) -> None:
    index = _with_duplicates(tmp_path / "index")
    with _client(tmp_path, index) as c:
        seen: list[str] = []
        for offset in range(0, 80, 7):
            r = c.get("/search", params={"q": "river", "mode": mode, "limit": 7,
                                         "offset": offset})
            assert r.status_code == 200, r.text
            page = [h["id"] for h in r.json()["hits"]]
            assert len(page) == len(set(page)), page
            seen += page
        assert len(seen) == len(set(seen)), "an id appeared on two pages"
        full = c.get("/search", params={"q": "river", "mode": mode, "limit": 100}).json()
        assert [h["id"] for h in full["hits"]] == seen[:len(full["hits"])]


def test_index_check_finds_and_repairs_duplicates_keeping_the_newest(tmp_path: Path) -> None:
    from clipsearch.index.check_commands import run_check

    _with_duplicates(tmp_path / "data" / "index")
    settings = Settings(data_dir=tmp_path / "data", embedding_dim=DIM, table="images")
    text, status = asyncio.run(run_check(settings, repair=False))
    assert status == 1 and "ids stored more than once: 20 (20 extra rows)" in text
    text, status = asyncio.run(run_check(settings, repair=True))
    assert status == 0 and "removed 20 older rows" in text
    index = EmbeddedIndex(settings.index_dir, dim=DIM)

    async def after() -> tuple[int, ImageDocument | None, bool]:
        return (await index.count(), await index.get(_doc(4).id), await index.flush_pending())

    count, kept, pending = asyncio.run(after())
    assert count == len(DOCS) and kept is not None and not pending
    assert kept.captions == ["newer river row 4"]
    assert asyncio.run(run_check(settings, repair=False))[1] == 0


# --- 3. a kill between the last acknowledged write and the flush ------------------------------

class KilledAtFlush(EmbeddedIndex):
    """Acknowledges every write, then 'dies' when the final flush starts."""

    async def flush(self) -> None:
        raise KeyboardInterrupt


def _rankings(index: EmbeddedIndex) -> list[list[tuple[str, float]]]:
    async def run() -> list[list[tuple[str, float]]]:
        out = []
        for q in ("river", "forest harbour", "town 7", "desert lake bridge"):
            result = await index.search(SearchPlan(mode=Mode.hybrid, text=q, vector=unit(3),
                                                   limit=20))
            out.append([(h.id, round(h.score, 6)) for h in result.hits])
        return out

    return asyncio.run(run())


def test_rerun_completes_a_flush_a_killed_feed_left_owed(tmp_path: Path) -> None:
    from feeder.commands import run_feed_async
    from feeder.request import FeedRequest
    from feeder.store import EmbeddingStore

    store = EmbeddingStore(tmp_path / "shards")
    vectors = l2_normalize(np.asarray([d.embedding for d in DOCS], np.float32))
    store.write([DocumentFields(id=d.id, captions=d.captions, dataset="f", category=d.category,
                                split="test", model_id="m") for d in DOCS],
                ["h"] * len(DOCS), vectors)
    settings = Settings(data_dir=tmp_path / "data", embedding_dim=DIM)
    request = FeedRequest(from_embeddings=store.root, progress=False, feed_batch_size=16)
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(run_feed_async(settings, request,
                                   index=KilledAtFlush(settings.index_dir, dim=DIM)))
    index = EmbeddedIndex(settings.index_dir, dim=DIM)
    assert asyncio.run(index.flush_pending())
    report = asyncio.run(run_feed_async(settings, request))
    assert report.indexed == 0 and report.already_indexed == len(DOCS)
    assert report.flushed_pending and not asyncio.run(index.flush_pending())
    clean = _fed(tmp_path / "clean", [ImageDocument(
        id=d.id, captions=d.captions, dataset="f", category=d.category, split="test",
        model_id="m", embedding=d.embedding) for d in DOCS])
    assert _rankings(index) == _rankings(clean)


def test_gateway_completes_an_owed_flush_when_no_writer_holds_the_lock(tmp_path: Path) -> None:
    root = tmp_path / "index"
    index = _fed(root, DOCS[:30])

    async def write_without_flush() -> None:
        await index.upsert(DOCS[30:])  # the marker is written, the flush never comes

    asyncio.run(write_without_flush())
    assert asyncio.run(index.flush_pending())
    with writer_lock(root, "a feeder at work"):  # a writer is busy: the gateway leaves it
        assert not asyncio.run(complete_pending_flush_if_free(index, "serve"))
    assert asyncio.run(complete_pending_flush_if_free(index, "serve"))
    assert not asyncio.run(index.flush_pending())
    assert _rankings(index) == _rankings(_fed(tmp_path / "clean"))


def test_the_gateways_own_index_answers_503_and_recovers(tmp_path: Path) -> None:
    """As ``clipsearch serve`` runs it: the index opened from settings (``open_index``)."""
    settings = Settings(data_dir=tmp_path / "data", embedding_dim=DIM)
    _fed(settings.index_dir)
    with TestClient(create_app(settings, embedder=FakeEmbedder())) as c:
        assert c.get("/search", params={"q": "river", "mode": "hybrid"}).status_code == 200
        restore = _rename(settings.index_dir)
        try:
            for mode in ("lexical", "hybrid"):
                r = c.get("/search", params={"q": "river", "mode": mode})
                assert r.status_code == 503 and r.headers["retry-after"], r.text
            assert c.get("/ready").status_code == 503
        finally:
            restore()
        assert c.get("/search", params={"q": "river", "mode": "hybrid"}).status_code == 200
        assert c.get("/ready").status_code == 200


def test_which_lancedb_errors_count_as_storage_faults() -> None:
    from clipsearch.errors import BackendUnavailable
    from clipsearch.index.embedded_faults import is_storage_fault, unavailable

    assert is_storage_fault(RuntimeError("lance error: Not found: /x/_versions, a.rs:1:2"))
    assert is_storage_fault(PermissionError(13, "Permission denied"))
    assert is_storage_fault(ValueError("LanceError(IO): failed to fill whole buffer"))
    assert not is_storage_fault(ValueError("not a filterable column: 'x'"))
    assert not is_storage_fault(BackendUnavailable("down"))
    missing = unavailable(RuntimeError("lance error: Not found: /srv/data/x.lance"), "search")
    assert missing.reason == "index_unavailable" and _is_safe(missing.message)
    busy = unavailable(RuntimeError("lance error: Retryable commit conflict for version 2"),
                       "upsert")
    assert busy.reason == "index_busy" and busy.retry_after_s == 1
