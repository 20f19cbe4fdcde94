"""The model the feeder loads itself on the CPU, started lazily: ``LocalEncoder``.

Nothing is loaded until the first batch that needs encoding: a feed whose images are all
indexed already (or whose embeddings are all in the shard folder) reads the model's identity
from its files (``identify``: dimension and embedding space, for the checks that come before
any write) and never starts a worker or builds a runtime.

On the first batch:

1. the runtime is resolved: ``auto`` is measured in a throwaway process (at the thread count
   the encoder will use) and logged once from here; that process exits, so the memory the
   measurement allocated (the fp32 reference, every candidate) is returned to the system
   instead of staying in the feeder's heap. A named runtime is only announced.
2. the encoder starts, with the image tower only (the feeder never embeds text):
   - ``workers >= 1``: ``PoolEncoder``, N processes of one thread each. Each task is a batch
     of image paths: the worker reads, decodes, preprocesses and embeds it and sends back one
     ``Encoded`` per path (a 512-d vector is 2 KB; pixels never cross processes). One batch
     running and one queued per worker, so decoding in one overlaps embedding in another.
   - ``workers == 0`` (the default): the model in this process with every core as intra-op
     threads, decoding one batch ahead in a thread (``PixelEncoder``).

``bench/feed.py`` measures both, interleaved in one run (README, "Feeder, images"): on 2
cores they are equally fast within the noise of a shared box, and one process needs less
than half the memory of N (each worker holds its own model), so one process is the default.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import gc
import logging
import os
from collections.abc import AsyncGenerator, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from itertools import chain, islice
from multiprocessing import get_context

import numpy as np

from clipsearch.models.model import ClipEncoder, announce_runtime, batch_threads, onnx_cache_dir
from clipsearch.models.preprocess import PreprocessSpec
from clipsearch.settings import Settings
from feeder.encoders import FeedEncoder, PixelEncoder
from feeder.ordered import ordered_map
from feeder.prepare import Encoded, embed_prepared, prepare_pixels
from feeder.worker_guard import exit_with_parent

log = logging.getLogger(__name__)
TOWERS = "vision"  # the feeder embeds images only


@dataclass(frozen=True)
class ModelMeta:
    """What the feed checks before writing anything, read without building a runtime."""

    model_id: str
    dim: int
    space_id: str | None


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


def release_free_memory() -> None:
    """Return freed heap pages to the system (glibc ``malloc_trim``; a no-op elsewhere).
    Loading a model leaves hundreds of MiB of freed but unreturned heap behind (the ONNX
    protobuf, the torch module it was exported from): ~110 MiB per worker, measured."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def read_meta(settings: Settings) -> ModelMeta:
    """The model's id, dimension and space (cheap when its fingerprint is cached)."""
    from clipsearch.models.identity import identify

    ident, dim, model_id = identify(settings.model, revision=settings.model_revision,
                                    cache_dir=onnx_cache_dir(settings).parent / "fingerprints")
    release_free_memory()
    return ModelMeta(model_id=model_id, dim=dim, space_id=ident.space)


CHECK_IMAGES = 8  # the feed's own first images that every auto candidate must match


def check_pixels(paths: Sequence[str], settings: Settings, spec: PreprocessSpec) -> np.ndarray:
    """The first ``CHECK_IMAGES`` readable images of ``paths``, preprocessed like the feed's
    (unreadable ones are skipped here; the feed reports them)."""
    rows = []
    for path in paths:
        got = prepare_pixels(path, spec=spec, max_bytes=settings.max_image_bytes,
                             max_pixels=settings.max_image_pixels)
        if isinstance(got.payload, np.ndarray):
            rows.append(got.payload)
        if len(rows) == CHECK_IMAGES:
            break
    return np.stack(rows) if rows else np.zeros((0, 3, spec.output_size[0],
                                                 spec.output_size[1]), np.float32)


def resolve_runtime(settings_json: str, threads: int,
                    check_paths: Sequence[str] = ()) -> tuple[str, str]:
    """(runtime, why): ``auto`` measured for the image tower at ``threads`` threads. With
    ``check_paths`` (the feed's first images) and ``feed_auto_int8``, onnx-int8 is a
    candidate too, and every candidate must stay within the cosine bar on those images.
    Run in a throwaway process (``resolve_in_subprocess``)."""
    settings = Settings.model_validate_json(settings_json)
    real = bool(check_paths) and settings.feed_auto_int8
    model = ClipEncoder.from_settings(
        settings, threads=threads, announce=False, towers=TOWERS,
        allow_int8=True if real else None,
        check_images=partial(check_pixels, check_paths, settings) if real else None)
    why = model.runtime_reason
    if real:
        why += (f"; int8 allowed, every candidate also checked on up to {CHECK_IMAGES} of "
                "the feed's first images")
    return model.runtime.name, why


async def resolve_in_subprocess(settings: Settings, threads: int,
                                check_paths: Sequence[str] = ()) -> tuple[str, str]:
    pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"),
                               initializer=exit_with_parent, initargs=(os.getpid(),))
    try:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool, resolve_runtime, settings.model_dump_json(),
                                          threads, list(check_paths))
    finally:
        await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)


@functools.lru_cache(maxsize=1)
def _worker_model(spec: WorkerSpec) -> ClipEncoder:
    """The worker process's model, loaded on its first task (cached per process)."""
    settings = Settings.model_validate_json(spec.settings_json)
    model = ClipEncoder.from_settings(settings, threads=spec.threads, runtime=spec.runtime,
                                      announce=False, towers=TOWERS)
    release_free_memory()
    return model


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
    return embed_prepared(prepared, model.embed_pixels)


def _check_same(meta: ModelMeta, runtime: str, got: Sequence[WorkerInfo]) -> None:
    for info in got:
        if (info.runtime, info.dim, info.space_id, info.model_id) != (
                runtime, meta.dim, meta.space_id, meta.model_id):
            raise RuntimeError(f"worker {info.pid} loaded {info.model_id} {info.runtime} "
                               f"({info.dim}-d), expected {meta.model_id} {runtime} "
                               f"({meta.dim}-d)")


class PoolEncoder:
    """Batches of paths encoded by ``workers`` processes of one thread each."""

    def __init__(self, pool: ProcessPoolExecutor, spec: WorkerSpec, workers: int) -> None:
        self._pool = pool
        self._spec = spec
        self._workers = workers

    @classmethod
    async def start(cls, settings: Settings, meta: ModelMeta, *, runtime: str,
                    workers: int) -> PoolEncoder:
        """Start the workers and load the model in each (so a broken model fails now)."""
        spec = WorkerSpec(settings_json=settings.model_dump_json(), runtime=runtime, threads=1)
        # spawn: a forked child would inherit the parent's torch thread pool state.
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                   initializer=exit_with_parent, initargs=(os.getpid(),))
        try:
            loop = asyncio.get_running_loop()
            infos = await asyncio.gather(*(loop.run_in_executor(pool, worker_info, spec)
                                           for _ in range(workers)))
            _check_same(meta, runtime, infos)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        return cls(pool, spec, workers)

    async def encode_batches(self, batches: Iterable[Sequence[str]]) -> AsyncGenerator[
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


class LocalEncoder:
    """``FeedEncoder`` for the model the feeder loads itself on the CPU, started on the first
    batch that needs encoding (module docstring)."""

    def __init__(self, settings: Settings, meta: ModelMeta, *, workers: int) -> None:
        self._settings = settings
        self._meta = meta
        self._workers = workers
        self._runtime: str | None = None
        self._pool: PoolEncoder | None = None
        self._inline: PixelEncoder | None = None

    @classmethod
    async def open(cls, settings: Settings, *, workers: int) -> LocalEncoder:
        meta = await asyncio.to_thread(read_meta, settings)
        return cls(settings, meta, workers=workers)

    @property
    def model_id(self) -> str:
        return self._meta.model_id

    @property
    def dim(self) -> int:
        return self._meta.dim

    @property
    def space_id(self) -> str | None:
        return self._meta.space_id

    @property
    def runtime(self) -> str:
        if self._runtime is None:
            return f"{self._settings.runtime} (not loaded: nothing to encode)"
        return self._runtime

    @property
    def started(self) -> bool:
        """Whether a model was loaded (worker processes or in this process)."""
        return self._pool is not None or self._inline is not None

    async def start(self, check_paths: Sequence[str] = ()) -> None:
        """Load now instead of on the first batch (benchmarks: loading is timed apart);
        ``check_paths``: the images ``auto`` checks its candidates on (else none)."""
        await self._start(check_paths)

    async def _start(self, check_paths: Sequence[str] = ()) -> FeedEncoder | PoolEncoder:
        if self._pool is not None:
            return self._pool
        if self._inline is not None:
            return self._inline
        s = self._settings
        threads = 1 if self._workers > 0 else batch_threads(s)
        how = (f"{self._workers} worker processes" if self._workers > 0
               else f"1 process, {threads} threads")
        if s.runtime == "auto":
            runtime, why = await resolve_in_subprocess(s, threads, check_paths)
        else:
            runtime, why = s.runtime, "configured (CLIPSEARCH_RUNTIME)"
        announce_runtime(runtime, s.model, s.device, threads, f"{why}; feeder: {how}, "
                         "image tower only")
        self._runtime = runtime
        if self._workers > 0:
            self._pool = await PoolEncoder.start(s, self._meta, runtime=runtime,
                                                 workers=self._workers)
            return self._pool
        model = await asyncio.to_thread(ClipEncoder.from_settings, s, threads=threads,
                                        runtime=runtime, announce=False, towers=TOWERS)
        await asyncio.to_thread(release_free_memory)
        _check_same(self._meta, runtime, [WorkerInfo(os.getpid(), model.model_id, model.dim,
                                                     model.runtime.name, model.space_id)])
        self._inline = PixelEncoder(model, s)
        return self._inline

    async def encode_batches(self, batches: Iterable[Sequence[str]]) -> AsyncGenerator[
            list[Encoded], None]:
        rest = iter(batches)  # may be lazy (the feed plans its source as it is pulled)
        head = list(islice(rest, 4))
        if not head:
            return
        first = [path for batch in head for path in batch][:4 * CHECK_IMAGES]
        encoder = await self._start(first)
        async for out in encoder.encode_batches(chain(head, rest)):
            yield out

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
