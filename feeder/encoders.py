"""The encoder as the feeder sees it: batches of image paths in, one ``Encoded`` per path out,
in order, with the decoding of later batches overlapping the encoding of earlier ones.

Three adapters (``open_encoder`` picks one from settings):

- ``LocalEncoder`` (feeder/encode_pool.py): the model the feeder loads itself on the CPU,
  image tower only, on the first image that needs encoding: in ``workers`` processes of one
  thread each (``CLIPSEARCH_FEED_WORKERS``), or in this process with every core as threads.
- ``PixelEncoder``: a model in this process. Decoding runs ahead in a background thread, or in
  ``decode_workers`` processes (DataLoader-style, for a GPU where decoding is the limit).
- ``BytesEncoder``: any ``Embedder`` taking image bytes, e.g. the encoder service over HTTP:
  several requests in flight, a refused image isolated, an unreachable encoder retried.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial
from multiprocessing import get_context
from typing import Any, Protocol, runtime_checkable

import numpy as np

from clipsearch.datasets.records import Reason
from clipsearch.embedder import Embedder
from clipsearch.embeddings import Embeddings
from clipsearch.errors import BackendUnavailable, InvalidImage
from clipsearch.models.identity import space_of
from clipsearch.models.preprocess import PreprocessSpec
from clipsearch.settings import Settings
from feeder.ordered import ordered_map
from feeder.prepare import (
    Encoded,
    Prepared,
    embed_prepared,
    prepare_all,
    prepare_bytes,
    prepare_pixels,
)
from feeder.request import FeedRequest
from feeder.worker_guard import exit_with_parent

log = logging.getLogger(__name__)


@runtime_checkable
class PixelModel(Protocol):
    """What the feeder needs from ``clipsearch.models.model.ClipEncoder``."""

    @property
    def model_id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def preprocess_spec(self) -> PreprocessSpec: ...

    def embed_pixels(self, batch: np.ndarray) -> Embeddings: ...


class FeedEncoder(Protocol):
    @property
    def model_id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def space_id(self) -> str | None: ...

    @property
    def runtime(self) -> str: ...

    def encode_batches(self, batches: Iterable[Sequence[str]]) -> AsyncGenerator[
        list[Encoded], None]: ...

    async def close(self) -> None: ...


def _runtime_name(model: object) -> str:
    runtime = getattr(model, "runtime", None)
    return str(getattr(runtime, "name", "") or type(model).__name__)


class PixelEncoder:
    """A model in this process; decoding runs ahead in a thread or in processes."""

    def __init__(self, model: PixelModel, settings: Settings, *,
                 decode_workers: int = 0) -> None:
        self._model = model
        self._settings = settings
        self._decode_workers = decode_workers

    @property
    def model_id(self) -> str:
        return self._model.model_id

    @property
    def dim(self) -> int:
        return self._model.dim

    @property
    def space_id(self) -> str | None:
        return space_of(self._model)

    @property
    def runtime(self) -> str:
        return _runtime_name(self._model)

    def preparer(self) -> Callable[[str], Prepared]:
        return partial(prepare_pixels, spec=self._model.preprocess_spec,
                       max_bytes=self._settings.max_image_bytes,
                       max_pixels=self._settings.max_image_pixels)

    def _executor(self) -> Executor:
        if self._decode_workers > 0:
            return ProcessPoolExecutor(max_workers=self._decode_workers,
                                       mp_context=get_context("spawn"),
                                       initializer=exit_with_parent, initargs=(os.getpid(),))
        # PIL and numpy release the GIL while decoding and resizing, so one thread overlaps
        # the model (which releases it too) at no start-up cost.
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="feed-decode")

    async def encode_batches(self, batches: Iterable[Sequence[str]]) -> AsyncGenerator[
            list[Encoded], None]:
        loop = asyncio.get_running_loop()
        prepare = partial(prepare_all, self.preparer())
        executor = self._executor()

        def decode(paths: Sequence[str]) -> Awaitable[list[Prepared]]:
            return loop.run_in_executor(executor, prepare, list(paths))

        try:
            ahead = max(2, self._decode_workers + 1)
            async for prepared in ordered_map(decode, batches, inflight=ahead):
                yield await asyncio.to_thread(embed_prepared, prepared, self._model.embed_pixels)
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

    async def close(self) -> None:
        return None


class BytesEncoder:
    """An ``Embedder`` (e.g. the remote encoder service) that takes encoded image bytes."""

    def __init__(self, embedder: Embedder, settings: Settings, request: FeedRequest | None = None,
                 closer: Callable[[], Awaitable[None]] | None = None,
                 runtime: str = "embedder") -> None:
        self._embedder = embedder
        self._settings = settings
        self._closer = closer
        self._runtime = runtime
        self._retries = request.retries if request else 4
        self._retry_base_s = request.retry_base_s if request else 0.5
        self._inflight = request.inflight if request else 1

    @property
    def model_id(self) -> str:
        return self._embedder.model_id

    @property
    def dim(self) -> int:
        return self._embedder.dim

    @property
    def space_id(self) -> str | None:
        return space_of(self._embedder)

    @property
    def runtime(self) -> str:
        return self._runtime

    def preparer(self) -> Callable[[str], Prepared]:
        return partial(prepare_bytes, max_bytes=self._settings.max_image_bytes,
                       max_pixels=self._settings.max_image_pixels)

    async def encode_batches(self, batches: Iterable[Sequence[str]]) -> AsyncGenerator[
            list[Encoded], None]:
        prepare = partial(prepare_all, self.preparer())

        async def one(paths: Sequence[str]) -> list[Encoded]:
            prepared = await asyncio.to_thread(prepare, list(paths))
            out = [Encoded.refused(p) for p in prepared]
            good = [i for i, p in enumerate(prepared) if p.reason is None]
            if good:
                done = await self._embed_isolating([prepared[i].payload for i in good])
                for i, enc in zip(good, done, strict=True):
                    out[i] = enc
            return out

        async for out in ordered_map(one, batches, inflight=self._inflight):
            yield out

    async def _embed_isolating(self, payloads: list[Any]) -> list[Encoded]:
        """Embed a batch; if the encoder refuses an image in it, find it and keep the others."""
        try:
            emb = await self._embed_retrying(payloads)
            return [Encoded(vector=v) for v in emb.vectors]
        except InvalidImage:
            pass
        out: list[Encoded] = []
        for payload in payloads:
            try:
                out.append(Encoded(vector=(await self._embed_retrying([payload])).vectors[0]))
            except InvalidImage as exc:
                out.append(Encoded(reason=Reason.invalid_image, detail=exc.message))
        return out

    async def _embed_retrying(self, payloads: list[Any]) -> Embeddings:
        """An unreachable encoder is retried with backoff; then the run stops (a rerun
        resumes from the shards already written)."""
        for attempt in range(self._retries + 1):
            try:
                return await self._embedder.embed_images([bytes(p) for p in payloads])
            except BackendUnavailable as exc:
                if attempt == self._retries:
                    raise
                delay = self._retry_base_s * 2**attempt
                log.warning("encoder unavailable (%s); retry in %.1f s", exc.message, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._closer is not None:
            await self._closer()


def adapt(encoder: object, settings: Settings,
          request: FeedRequest | None = None) -> FeedEncoder:
    """Wrap a given model/embedder: pixels when it can take them, else bytes."""
    if isinstance(encoder, PixelModel):
        return PixelEncoder(encoder, settings)
    if isinstance(encoder, Embedder):
        return BytesEncoder(encoder, settings, request)
    raise TypeError(f"cannot encode images with {type(encoder).__name__}")


async def open_encoder(settings: Settings, request: FeedRequest | None = None) -> FeedEncoder:
    """The encoder named by settings: the service at ``encoder_url``; else the model with the
    configured runtime (``CLIPSEARCH_RUNTIME``): on the CPU ``LocalEncoder`` (loaded on the
    first image that needs encoding, in ``request.workers`` processes, or in this process
    with every core as threads when ``workers`` is 0); on a GPU in this process (decoding
    in ``workers`` processes)."""
    workers = request.workers if request is not None else 0
    if settings.encoder_url:
        from clipsearch.encoder_client import RemoteEmbedder

        remote = RemoteEmbedder(settings.encoder_url, timeout_s=settings.encoder_timeout_s)
        try:
            info = await remote.connect()
        except BaseException:
            await remote.close()
            raise
        return BytesEncoder(remote, settings, request, closer=remote.close,
                            runtime=f"remote {info.runtime} on {info.device}")

    if settings.device.startswith("cuda"):
        from clipsearch.models.model import ClipEncoder

        model = await asyncio.to_thread(ClipEncoder.from_settings, settings)
        return PixelEncoder(model, settings, decode_workers=workers or os.cpu_count() or 1)
    from feeder.encode_pool import LocalEncoder

    return await LocalEncoder.open(settings, workers=max(0, workers))
