"""The parallel feeder: the configured runtime reaches it, worker processes give the same index
as a serial in-process fp32 feed, a killed parallel feed resumes to exactly the source, and the
pipelining primitive keeps order with a bounded number in flight."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from clipsearch.datasets.sample import make_sample_dataset
from clipsearch.embeddings import Embeddings, l2_normalize
from clipsearch.errors import BackendUnavailable
from clipsearch.settings import Settings
from feeder.commands import FeedRequest, run_feed_async
from feeder.encoders import BytesEncoder
from feeder.ordered import ordered_map
from tests.feeder_fixtures import MAX_PIXELS, make_generic, stored_embeddings

REPO = Path(__file__).resolve().parents[1]
DEADLINE_S = 300.0  # generous: a shared 2-core box can be 5x oversubscribed


async def test_runtime_setting_reaches_parallel_feed_and_matches_serial_fp32(
        tmp_path: Path, tiny_clip_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from clipsearch.models.model import ClipEncoder

    exp = make_generic(tmp_path / "src", n_good=6)
    monkeypatch.setenv("CLIPSEARCH_RUNTIME", "onnx")
    monkeypatch.setenv("CLIPSEARCH_FEED_WORKERS", "2")
    parallel = Settings(data_dir=tmp_path / "par", model=str(tiny_clip_dir),
                        max_image_pixels=MAX_PIXELS)
    assert parallel.runtime == "onnx"
    req = FeedRequest(source=exp.source, progress=False, batch_size=3,
                      dead_letter=tmp_path / "par-dead.jsonl")
    assert req.workers == 2
    report = await run_feed_async(parallel, req)  # the feeder loads the model itself
    assert report.runtime == "onnx"  # what the worker processes actually ran

    serial = Settings(data_dir=tmp_path / "ser", model=str(tiny_clip_dir), runtime="torch",
                      max_image_pixels=MAX_PIXELS)
    reference = ClipEncoder.load(str(tiny_clip_dir), runtime="torch", threads=1)
    ref = await run_feed_async(serial, FeedRequest(source=exp.source, progress=False,
                                                   dead_letter=tmp_path / "ser-dead.jsonl"),
                               encoder=reference)
    assert ref.runtime == "torch"
    assert (report.indexed, report.skipped_by_reason, report.repaired_by_reason) == (
        ref.indexed, ref.skipped_by_reason, ref.repaired_by_reason)
    assert report.indexed == len(exp.good) and report.consistent
    got = await stored_embeddings(parallel, exp.good)
    want = await stored_embeddings(serial, exp.good)
    cosines = [float(got[i] @ want[i]) for i in exp.good]
    assert min(cosines) >= 0.999, cosines


def ledger_lines(data_dir: Path) -> int:
    return sum(len(p.read_bytes().splitlines())
               for p in (data_dir / "feeder").glob("ledger-*.jsonl"))


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found |= {int(x) for x in task.read_text().split()}
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to find the workers")
def test_killed_parallel_feed_reruns_to_exactly_the_source(tmp_path: Path,
                                                           tiny_clip_dir: Path) -> None:
    ds = make_sample_dataset(tmp_path / "src", n_per_category=30, dataset="pk")
    ids = [f"pk:{r.id}" for r in ds.records]
    data_dir = tmp_path / "data"
    env = {**os.environ, "CLIPSEARCH_DATA_DIR": str(data_dir),
           "CLIPSEARCH_MODEL": str(tiny_clip_dir), "CLIPSEARCH_RUNTIME": "torch",
           "CLIPSEARCH_FEED_SHARD_DOCS": "4", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "feeder", "feed", str(ds.manifest), "--no-progress",
           "--batch-size", "4", "--feed-batch-size", "4"]
    proc = subprocess.Popen([*cmd, "--workers", "2"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + DEADLINE_S
    workers: set[int] = set()
    try:
        while ledger_lines(data_dir) < 8:  # two acknowledged batches, encoded by the workers
            assert proc.poll() is None, proc.stdout.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the feeder made no progress in time"
            time.sleep(0.005)
        workers = children(proc.pid)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the feeder finished before it was killed"
    assert len(workers) >= 2  # spawn's resource tracker may be a child too
    while any(alive(pid) for pid in workers):  # orphaned workers exit on their own
        assert time.monotonic() < deadline, "worker processes outlived the killed feeder"
        time.sleep(0.05)

    rerun = subprocess.run([*cmd, "--workers", "0"], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=DEADLINE_S, check=False)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "encoded" in rerun.stdout
    settings = Settings(data_dir=data_dir)
    vectors = asyncio.run(stored_embeddings(settings, ids))  # count == source, every id present
    assert set(vectors) == set(ids)


async def test_ordered_map_keeps_order_and_bounds_what_is_in_flight() -> None:
    running = 0
    peak = 0

    async def work(i: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001 * ((7 * i) % 5))  # finish out of order
        running -= 1
        return i * i

    out = [x async for x in ordered_map(work, range(40), inflight=4)]
    assert out == [i * i for i in range(40)] and peak == 4

    async def fails(i: int) -> int:
        if i == 3:
            raise ValueError("boom")
        await asyncio.sleep(0.01)
        return i

    got: list[int] = []
    with pytest.raises(ValueError, match="boom"):
        async for x in ordered_map(fails, range(10), inflight=3):
            got.append(x)
    assert got == [0, 1, 2]
    with pytest.raises(ValueError):
        [x async for x in ordered_map(work, range(3), inflight=0)]


class FlakyEmbedder:
    """Answers out of order (random delays), fails now and then with 503, counts overlap."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.calls = 0
        self.rng = np.random.default_rng(0)

    @property
    def model_id(self) -> str:
        return "flaky"

    @property
    def dim(self) -> int:
        return 8

    async def embed_texts(self, texts: Sequence[str]) -> Embeddings:
        raise NotImplementedError

    async def embed_images(self, images: Sequence[bytes]) -> Embeddings:
        self.calls += 1
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(float(self.rng.uniform(0, 0.01)))
            if self.calls % 5 == 0:
                raise BackendUnavailable("busy", reason="encoder_unavailable")
            rows = [np.frombuffer(img[-8:].ljust(8, b"\x01"), np.uint8) for img in images]
            return Embeddings("flaky", l2_normalize(np.stack(rows).astype(np.float32) + 1))
        finally:
            self.running -= 1

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


async def test_remote_path_pipelines_requests_in_order_with_retries(tmp_path: Path) -> None:
    exp = make_generic(tmp_path / "src", n_good=12)
    files = sorted(str(p) for p in (tmp_path / "src/images").glob("good_*"))
    embedder = FlakyEmbedder()
    req = FeedRequest(source=exp.source, retry_base_s=0.0, inflight=3)
    enc = BytesEncoder(embedder, Settings(max_image_pixels=MAX_PIXELS), req)
    batches = [files[i:i + 2] for i in range(0, len(files), 2)]
    got = [out async for out in enc.encode_batches(batches)]
    assert 1 < embedder.peak <= 3  # several requests in flight, never more than asked
    flat = [o.vector for batch in got for o in batch]
    for path, vec in zip(files, flat, strict=True):
        row = np.frombuffer(Path(path).read_bytes()[-8:], np.uint8).astype(np.float32) + 1
        assert vec is not None and np.allclose(vec, row / np.linalg.norm(row))


async def test_decoding_in_processes_gives_the_same_vectors(tmp_path: Path,
                                                            tiny_clip_dir: Path) -> None:
    """The GPU path's DataLoader-style decoding (processes), exercised on the CPU."""
    from clipsearch.models.model import ClipEncoder
    from feeder.encoders import PixelEncoder

    exp = make_generic(tmp_path / "src", n_good=5)
    files = sorted(str(p) for p in (tmp_path / "src/images").iterdir())
    batches = [files[i:i + 3] for i in range(0, len(files), 3)]
    clip = ClipEncoder.load(str(tiny_clip_dir), runtime="torch", threads=1)
    settings = Settings(max_image_pixels=MAX_PIXELS)
    inline = [o async for b in PixelEncoder(clip, settings).encode_batches(batches) for o in b]
    spawned = [o async for b in PixelEncoder(clip, settings, decode_workers=2)
               .encode_batches(batches) for o in b]
    assert len(inline) == len(spawned) == len(files) and exp.rows > 0
    for a, b in zip(inline, spawned, strict=True):
        assert (a.reason, a.detail) == (b.reason, b.detail)
        assert (a.vector is None) == (b.vector is None)
        if a.vector is not None and b.vector is not None:
            assert np.allclose(a.vector, b.vector, atol=1e-6)
    assert any(o.reason is not None for o in inline) and any(o.vector is not None
                                                             for o in inline)
