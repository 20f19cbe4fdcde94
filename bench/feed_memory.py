"""RSS over a long feed (``bench/feed.py --long``): checkpoints, growth per 1,000 images after
warm-up, and optionally where Python's own allocations grew (tracemalloc).

A sampler thread reads the RSS of this process and its children (the feeder's workers) every
half second and, every ``every_s`` seconds, records a checkpoint: images indexed so far (the
ledger's lines), RSS. The growth is the least-squares slope of RSS over images indexed, fitted
on the checkpoints after warm-up (the end point is left out: the final flush and close change
the heap for other reasons).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import threading
import time
import tracemalloc
import zlib
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence, Sized
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clipsearch.embeddings import l2_normalize
from clipsearch.machine import process_kib
from feeder.prepare import Encoded


def rss_mib(pid: int) -> float:
    return (process_kib(pid, "VmRSS") or 0) / 1024


def tree_rss_mib() -> float:
    """RSS of this process and its children (the feeder's workers)."""
    me = os.getpid()
    total = rss_mib(me)
    for child in Path(f"/proc/{me}/task").glob("*/children"):
        try:
            pids = child.read_text().split()
        except OSError:  # the thread ended since the glob
            continue
        for pid in pids:
            total += rss_mib(int(pid))
    return total


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def malloc_heap_mib() -> tuple[float, float]:
    """(in use, free) MiB of this process's glibc heap (every arena, not mmapped blocks);
    (0, 0) without glibc >= 2.33. Free but kept memory growing while in-use memory stays
    flat is fragmentation, not a leak."""
    try:
        info = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return 0.0, 0.0
    info.restype = _MallInfo2
    got = info()
    return got.uordblks / 2**20, got.fordblks / 2**20


@dataclass(frozen=True)
class Checkpoint:
    seconds: float
    images: int
    rss_mib: float
    heap_used_mib: float = 0.0
    heap_free_mib: float = 0.0


def growth_kib_per_image(points: list[Checkpoint], warmup: int,
                         of: Callable[[Checkpoint], float] = lambda p: p.rss_mib
                         ) -> float | None:
    """Least-squares slope of ``of`` (default RSS, MiB) over images, on the checkpoints with
    >= ``warmup`` images (KiB per image), or None with fewer than three such checkpoints."""
    pts = [p for p in points if p.images >= warmup]
    if len(pts) < 3 or len({p.images for p in pts}) < 2:
        return None
    n = len(pts)
    mx = sum(p.images for p in pts) / n
    my = sum(of(p) for p in pts) / n
    sxx = sum((p.images - mx) ** 2 for p in pts)
    sxy = sum((p.images - mx) * (of(p) - my) for p in pts)
    return sxy / sxx * 1024


@dataclass
class RssTracker:
    """Samples RSS in a thread while a feed runs; see the module docstring."""

    count_images: Callable[[], int]
    every_s: float = 15.0
    trace_after: int = 0  # > 0: tracemalloc snapshots at this many images and at the end
    print_tag: str = ""
    start_rss: float = 0.0
    peak: float = 0.0
    points: list[Checkpoint] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _t0: float = 0.0
    _snap: tracemalloc.Snapshot | None = None  # at the first checkpoint after trace_after
    _last: tracemalloc.Snapshot | None = None  # at the latest checkpoint

    def start(self) -> None:
        self.start_rss = self.peak = tree_rss_mib()
        self._t0 = time.perf_counter()
        self.points.append(Checkpoint(0.0, 0, self.start_rss))
        if self.trace_after:
            tracemalloc.start(1)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _checkpoint(self) -> Checkpoint:
        cp = Checkpoint(time.perf_counter() - self._t0, self.count_images(), tree_rss_mib(),
                        *malloc_heap_mib())
        self.points.append(cp)
        if self.print_tag:
            print(f"    [{self.print_tag}] {cp.seconds:6.0f} s: {cp.images} images indexed, "
                  f"RSS {cp.rss_mib:.0f} MiB (malloc heap: {cp.heap_used_mib:.0f} in use, "
                  f"{cp.heap_free_mib:.0f} free)", flush=True)
        if self.trace_after and cp.images >= self.trace_after:
            snap = tracemalloc.take_snapshot()
            if self._snap is None:
                self._snap = snap
            else:
                self._last = snap
        return cp

    def _run(self) -> None:
        last = time.perf_counter()
        while not self._stop.wait(0.5):
            self.peak = max(self.peak, tree_rss_mib())
            if time.perf_counter() - last >= self.every_s:
                last = time.perf_counter()
                self._checkpoint()

    def stop(self, images: int) -> Checkpoint:
        """Stop sampling; the end point (``images`` indexed, RSS now)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        end = Checkpoint(time.perf_counter() - self._t0, images, tree_rss_mib())
        self.peak = max(self.peak, end.rss_mib)
        return end

    def traced_growth(self, top: int = 12) -> list[str]:
        """The lines whose Python allocations grew most between the first and the latest
        checkpoint after ``trace_after`` (both while the feed ran). tracemalloc's own
        bookkeeping inflates the RSS of a traced run: read its RSS figures apart."""
        if not tracemalloc.is_tracing():
            return []
        tracemalloc.stop()
        if self._snap is None or self._last is None:
            return []
        stats = self._last.compare_to(self._snap, "lineno")
        return [str(s) for s in stats[:top] if s.size_diff > 0]


class NoModel:
    """A ``FeedEncoder`` without a model or decoding (``bench/feed.py --long N --model none``):
    a unit vector per path from its name's hash, so that a long feed measures the feeder's own
    memory (planning, shards, writer, ledger) and the index engine's, nothing else."""

    model_id = "no-model"
    space_id = None
    runtime = "none"

    def __init__(self, dim: int = 512) -> None:
        self.dim = dim

    async def encode_batches(self, batches: Iterable[Sequence[str]]) -> AsyncGenerator[
            list[Encoded], None]:
        for paths in batches:
            rows = [np.random.default_rng(zlib.crc32(path.encode())).normal(size=self.dim)
                    for path in paths]
            vectors = l2_normalize(np.stack(rows).astype(np.float32))
            await asyncio.sleep(0)
            yield [Encoded(vector=v) for v in vectors]

    async def close(self) -> None:
        return None


class NullIndex:
    """An index that keeps nothing (``bench/feed.py --long N --index null``): a long feed then
    measures the feeder and its encoder without the index engine's memory."""

    def __init__(self, dim: int = 512) -> None:
        self.dim = dim

    async def ensure_ready(self) -> None:
        return None

    async def existing_ids(self, ids: Sequence[str]) -> set[str]:
        return set()

    async def upsert_batch(self, batch: Sized) -> int:
        return len(batch)

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        return None
