"""Micro-batching: concurrent requests grouped into one forward pass on one model thread.

Every model call goes through one worker thread (the model is not thread-safe, and on a small
CPU two concurrent forward passes are slower than one batched pass). The worker takes the
first queued job, then gathers more for up to ``max_wait_ms`` or until ``max_items`` texts or
images are waiting, and runs all texts as one ``embed_texts`` call and all images as one
``embed_pixels`` call. Callers get ``concurrent.futures.Future`` objects, so the batcher works
from any event loop (``asyncio.wrap_future``) and from plain threads alike.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clipsearch.embeddings import Embeddings
from clipsearch.errors import BackendUnavailable
from clipsearch.models.model import ClipEncoder

log = logging.getLogger(__name__)

BatchObserver = Callable[[str, int, int], None]  # (kind, requests, items)


@dataclass
class _Job:
    kind: str  # "text" | "pixels" | "call"
    payload: Any
    size: int
    future: Future[Any] = field(default_factory=Future)


class MicroBatcher:
    def __init__(self, encoder: ClipEncoder, *, max_items: int = 64, max_wait_ms: float = 2.0,
                 on_batch: BatchObserver | None = None) -> None:
        self._encoder = encoder
        self._max_items = max(1, max_items)
        self._max_wait = max(0.0, max_wait_ms) / 1000
        self._on_batch = on_batch
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="clip-encoder", daemon=True)
        self._thread.start()

    # --- submitting -------------------------------------------------------------------------
    def _submit(self, job: _Job) -> Future[Any]:
        if self._closed.is_set():
            raise BackendUnavailable("the encoder is shutting down", reason="encoder_closed")
        self._queue.put(job)
        return job.future

    def submit_texts(self, texts: list[str]) -> Future[Embeddings]:
        return self._submit(_Job("text", texts, len(texts)))

    def submit_pixels(self, pixels: np.ndarray) -> Future[Embeddings]:
        return self._submit(_Job("pixels", pixels, int(pixels.shape[0])))

    def call(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run ``fn`` alone on the model thread (exclusive access to the encoder)."""
        return self._submit(_Job("call", fn, 1))

    def close(self, timeout: float = 5.0) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._queue.put(None)
            self._thread.join(timeout)

    # --- the worker -------------------------------------------------------------------------
    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        jobs, items = [first], first.size
        deadline = time.monotonic() + self._max_wait
        while items < self._max_items:
            remaining = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=remaining) if remaining > 0 \
                    else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
            items += job.size
        return jobs, False

    def _loop(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            jobs, stop = self._gather(first)
            jobs = [j for j in jobs if j.future.set_running_or_notify_cancel()]  # drop cancelled
            for kind in ("text", "pixels"):
                group = [j for j in jobs if j.kind == kind]
                if group:
                    self._run_group(kind, group)
            for job in jobs:
                if job.kind == "call":
                    self._settle([job], _single(job.payload))

    def _run_group(self, kind: str, group: list[_Job]) -> None:
        if self._on_batch is not None:
            self._on_batch(kind, len(group), sum(j.size for j in group))

        def run() -> list[Embeddings]:
            if kind == "text":
                texts = [t for j in group for t in j.payload]
                emb = self._encoder.embed_texts(texts)
            else:
                emb = self._encoder.embed_pixels(np.concatenate([j.payload for j in group]))
            out, start = [], 0
            for j in group:
                out.append(Embeddings(model_id=emb.model_id,
                                      vectors=emb.vectors[start : start + j.size]))
                start += j.size
            return out

        self._settle(group, run)

    @staticmethod
    def _settle(jobs: list[_Job], run: Callable[[], list[Any]]) -> None:
        try:
            results = run()
        except Exception as exc:  # delivered to every caller of the failed batch
            for job in jobs:
                job.future.set_exception(exc)
            return
        for job, result in zip(jobs, results, strict=True):
            job.future.set_result(result)


def _single(fn: Callable[[], Any]) -> Callable[[], list[Any]]:
    return lambda: [fn()]
