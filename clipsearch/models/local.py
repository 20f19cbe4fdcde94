"""``LocalEmbedder``: the in-process model behind the async ``Embedder`` protocol."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

import torch

from clipsearch.embeddings import Embeddings
from clipsearch.models.batching import BatchObserver, MicroBatcher
from clipsearch.models.model import ClipEncoder
from clipsearch.settings import Settings

T = TypeVar("T")
DECODE_THREADS = 2


class LocalEmbedder:
    """Runs ``ClipEncoder`` behind a ``MicroBatcher``: calls never block the event loop, never
    run the model concurrently, and concurrent calls share forward passes. Image decoding and
    preprocessing run in a worker thread beside the model thread, so they overlap inference.
    """

    def __init__(self, encoder: ClipEncoder, settings: Settings, *,
                 on_batch: BatchObserver | None = None) -> None:
        self._encoder = encoder
        self._max_bytes = settings.max_image_bytes
        self._max_pixels = settings.max_image_pixels
        torch.set_num_threads(settings.torch_threads)
        # Decoding beside the model thread; bounded, so concurrent uploads of large images
        # cannot hold more than a few decoded bitmaps in memory at once.
        self._decoders = ThreadPoolExecutor(max_workers=DECODE_THREADS,
                                            thread_name_prefix="clip-decode")
        self._batcher = MicroBatcher(encoder, max_items=settings.encoder_batch_max_items,
                                     max_wait_ms=settings.encoder_batch_wait_ms,
                                     on_batch=on_batch)

    @property
    def encoder(self) -> ClipEncoder:
        return self._encoder

    @property
    def model_id(self) -> str:
        return self._encoder.model_id

    @property
    def dim(self) -> int:
        return self._encoder.dim

    @property
    def space_id(self) -> str | None:
        """The embedding space (``clipsearch.models.identity``), None if unknown."""
        return self._encoder.space_id

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` alone on the model thread."""
        result: T = await asyncio.wrap_future(self._batcher.call(fn))
        return result

    async def embed_texts(self, texts: Sequence[str]) -> Embeddings:
        return await asyncio.wrap_future(self._batcher.submit_texts(list(texts)))

    async def embed_images(self, images: Sequence[bytes]) -> Embeddings:
        items = list(images)
        prepare = partial(self._encoder.preprocess_images, items, max_bytes=self._max_bytes,
                          max_pixels=self._max_pixels)
        pixels = await asyncio.get_running_loop().run_in_executor(self._decoders, prepare)
        return await asyncio.wrap_future(self._batcher.submit_pixels(pixels))

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        await asyncio.to_thread(self._batcher.close)
        self._decoders.shutdown(wait=False, cancel_futures=True)
