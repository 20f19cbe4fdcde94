"""N encoder worker processes, each with its own copy of the model and one thread.

Each task is a batch of image paths: the worker reads, decodes, preprocesses and embeds it and
sends back one ``Encoded`` per path (a 512-d vector is 2 KB; pixels never cross processes).
With N = the number of cores, one worker decodes while another embeds, so decoding overlaps
encoding without a separate stage, and no thread waits at an intra-op barrier for a core a
neighbour holds (measured against one process with N threads: bench/feed.py, README).

The parent resolves ``auto`` once (it loads the model and measures, logging the choice) and
the workers load that runtime by name, quietly.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import AsyncGenerator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from multiprocessing import get_context

import numpy as np

from clipsearch.models.model import ClipEncoder, announce_runtime
from clipsearch.settings import Settings
from feeder.ordered import ordered_map
from feeder.prepare import Encoded, prepare_pixels
from feeder.worker_guard import exit_with_parent


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs to load the model (picklable, hashable)."""

    settings_json: str
    runtime: str
    threads: int


@dataclass(frozen=True)
class WorkerInfo:
    pid: int
    model_id: str
    dim: int
    runtime: str
    space_id: str | None


@functools.lru_cache(maxsize=1)
def _worker_model(spec: WorkerSpec) -> ClipEncoder:
    """The worker process's model, loaded on its first task (cached per process)."""
    settings = Settings.model_validate_json(spec.settings_json)
    return ClipEncoder.from_settings(settings, threads=spec.threads, runtime=spec.runtime,
                                     announce=False)


def worker_info(spec: WorkerSpec) -> WorkerInfo:
    model = _worker_model(spec)
    return WorkerInfo(pid=os.getpid(), model_id=model.model_id, dim=model.dim,
                      runtime=model.runtime.name, space_id=model.space_id)


def encode_paths(spec: WorkerSpec, paths: Sequence[str]) -> list[Encoded]:
    """Read, decode, preprocess and embed ``paths`` in this worker; one outcome per path."""
    model = _worker_model(spec)
    settings = Settings.model_validate_json(spec.settings_json)
    prepared = [prepare_pixels(p, spec=model.preprocess_spec,
                               max_bytes=settings.max_image_bytes,
                               max_pixels=settings.max_image_pixels) for p in paths]
    good = [i for i, prep in enumerate(prepared) if prep.reason is None]
    out = [Encoded.refused(prep) for prep in prepared]
    if good:
        pixels = np.stack([prepared[i].payload for i in good])  # type: ignore[misc]
        vectors = model.embed_pixels(pixels).vectors
        for row, i in enumerate(good):
            out[i] = Encoded(vector=vectors[row])
    return out


class PoolEncoder:
    """The feed encoder over ``workers`` processes (``FeedEncoder``)."""

    def __init__(self, pool: ProcessPoolExecutor, spec: WorkerSpec, *, workers: int,
                 model_id: str, dim: int, space_id: str | None, runtime: str) -> None:
        self._pool = pool
        self._spec = spec
        self._workers = workers
        self._model_id = model_id
        self._dim = dim
        self._space_id = space_id
        self._runtime = runtime

    @classmethod
    async def start(cls, settings: Settings, *, workers: int, threads: int = 1) -> PoolEncoder:
        """Resolve the runtime once, start the workers and load the model in each (so a broken
        model fails now, and loading is not counted as feeding).

        ``auto`` is measured here, in this process at the workers' thread count, and logged;
        the workers then load the chosen runtime by name, quietly. A named runtime is not
        loaded here at all (one copy less in memory); it is announced once from here.
        """
        if settings.runtime == "auto":
            parent = await asyncio.to_thread(ClipEncoder.from_settings, settings,
                                             threads=threads)
            runtime = parent.runtime.name
            del parent  # the workers hold the copies that encode
        else:
            runtime = settings.runtime
            announce_runtime(runtime, settings.model, settings.device, threads,
                             f"configured (CLIPSEARCH_RUNTIME), {workers} worker processes")
        spec = WorkerSpec(settings_json=settings.model_dump_json(), runtime=runtime,
                          threads=threads)
        # spawn: a forked child would inherit the parent's torch thread pool state.
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                   initializer=exit_with_parent, initargs=(os.getpid(),))
        try:
            loop = asyncio.get_running_loop()
            infos = await asyncio.gather(*(loop.run_in_executor(pool, worker_info, spec)
                                           for _ in range(workers)))
            for info in infos:
                if (info.runtime, info.dim, info.space_id) != (
                        runtime, infos[0].dim, infos[0].space_id):
                    raise RuntimeError(f"worker {info.pid} loaded {info.runtime} "
                                       f"({info.dim}-d), expected {runtime}")
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        first = infos[0]
        return cls(pool, spec, workers=workers, model_id=first.model_id, dim=first.dim,
                   space_id=first.space_id, runtime=runtime)

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def space_id(self) -> str | None:
        return self._space_id

    @property
    def runtime(self) -> str:
        return self._runtime

    async def encode_batches(self, batches: Sequence[Sequence[str]]) -> AsyncGenerator[
            list[Encoded], None]:
        loop = asyncio.get_running_loop()
        run = partial(encode_paths, self._spec)

        async def one(paths: Sequence[str]) -> list[Encoded]:
            return await loop.run_in_executor(self._pool, run, list(paths))

        # one batch running and one queued per worker: no worker ever waits for the parent
        async for out in ordered_map(one, batches, inflight=2 * self._workers):
            yield out

    async def close(self) -> None:
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)
