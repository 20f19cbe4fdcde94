"""The encoder as the feeder sees it: a picklable ``prepare`` step for workers, and ``encode``.

Two adapters: an in-process CLIP model (workers decode + preprocess to pixels, the model embeds
pixel batches) and any ``Embedder`` taking image bytes (the encoder service over HTTP).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Protocol, runtime_checkable

import numpy as np

from clipsearch.embedder import Embedder
from clipsearch.embeddings import Embeddings
from clipsearch.models.identity import space_of
from clipsearch.models.preprocess import PreprocessSpec
from clipsearch.settings import Settings
from feeder.prepare import Prepared, prepare_bytes, prepare_pixels


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

    def preparer(self) -> Callable[[str], Prepared]: ...

    async def encode(self, payloads: Sequence[Any]) -> Embeddings: ...

    async def close(self) -> None: ...


class PixelEncoder:
    """In-process model: workers produce pixels, the model embeds them."""

    def __init__(self, model: PixelModel, settings: Settings) -> None:
        self._model = model
        self._settings = settings

    @property
    def model_id(self) -> str:
        return self._model.model_id

    @property
    def dim(self) -> int:
        return self._model.dim

    @property
    def space_id(self) -> str | None:
        return space_of(self._model)

    def preparer(self) -> Callable[[str], Prepared]:
        return partial(prepare_pixels, spec=self._model.preprocess_spec,
                       max_bytes=self._settings.max_image_bytes,
                       max_pixels=self._settings.max_image_pixels)

    async def encode(self, payloads: Sequence[Any]) -> Embeddings:
        return self._model.embed_pixels(np.stack(list(payloads)))

    async def close(self) -> None:
        return None


class BytesEncoder:
    """An ``Embedder`` (e.g. the remote encoder service) that takes encoded image bytes."""

    def __init__(self, embedder: Embedder, settings: Settings,
                 closer: Callable[[], Awaitable[None]] | None = None) -> None:
        self._embedder = embedder
        self._settings = settings
        self._closer = closer

    @property
    def model_id(self) -> str:
        return self._embedder.model_id

    @property
    def dim(self) -> int:
        return self._embedder.dim

    @property
    def space_id(self) -> str | None:
        return space_of(self._embedder)

    def preparer(self) -> Callable[[str], Prepared]:
        return partial(prepare_bytes, max_bytes=self._settings.max_image_bytes,
                       max_pixels=self._settings.max_image_pixels)

    async def encode(self, payloads: Sequence[Any]) -> Embeddings:
        return await self._embedder.embed_images([bytes(p) for p in payloads])

    async def close(self) -> None:
        if self._closer is not None:
            await self._closer()


def adapt(encoder: object, settings: Settings) -> FeedEncoder:
    """Wrap a given model/embedder: pixels when it can take them, else bytes."""
    if isinstance(encoder, PixelModel):
        return PixelEncoder(encoder, settings)
    if isinstance(encoder, Embedder):
        return BytesEncoder(encoder, settings)
    raise TypeError(f"cannot encode images with {type(encoder).__name__}")


async def open_encoder(settings: Settings) -> FeedEncoder:
    """The encoder named by settings: the service at ``encoder_url``, else the local model."""
    if settings.encoder_url:
        from clipsearch.encoder_client import RemoteEmbedder

        remote = RemoteEmbedder(settings.encoder_url, timeout_s=settings.encoder_timeout_s)
        try:
            await remote.connect()
        except BaseException:
            await remote.close()
            raise
        return BytesEncoder(remote, settings, closer=remote.close)
    from clipsearch.models.model import ClipEncoder

    model = await asyncio.to_thread(ClipEncoder.load, settings.model,
                                    revision=settings.model_revision, device=settings.device,
                                    threads=settings.torch_threads)
    return PixelEncoder(model, settings)
