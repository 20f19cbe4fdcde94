"""``LocalEmbedder``: the in-process model behind the async ``Embedder`` protocol."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from functools import partial
from typing import TypeVar

import numpy as np
import torch

from clipsearch.embeddings import Embeddings
from clipsearch.errors import InvalidImage
from clipsearch.models.batching import BatchObserver, MicroBatcher
from clipsearch.models.decode_lanes import DecodeLanes
from clipsearch.models.images import request_pixels
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
        self._max_request_pixels = settings.max_request_pixels
        # Decoding beside the model thread: small images on their own lane, large ones
        # within a pixel budget, so concurrent uploads of large images cannot hold more than
        # that many decoded pixels at once nor delay small uploads (issue 16).
        self._lanes = DecodeLanes(small_pixels=settings.small_image_pixels,
                                  pixel_budget=settings.decode_pixel_budget,
                                  small_threads=DECODE_THREADS, large_threads=DECODE_THREADS)
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
        sizes = request_pixels(items, max_bytes=self._max_bytes, max_pixels=self._max_pixels,
                               budget=self._max_request_pixels)  # headers only: 413 early
        parts = await asyncio.gather(*(
            self._lanes.run(size, partial(self._prepare_one, i, data))
            for i, (size, data) in enumerate(zip(sizes, items, strict=True))))
        pixels = (np.concatenate(parts) if parts else
                  np.zeros((0, 3, *self._encoder.preprocess_spec.output_size), np.float32))
        return await asyncio.wrap_future(self._batcher.submit_pixels(pixels))

    def _prepare_one(self, position: int, data: bytes) -> np.ndarray:
        try:
            return self._encoder.preprocess_images([data], max_bytes=self._max_bytes,
                                                   max_pixels=self._max_pixels)
        except InvalidImage as exc:  # name its place in the request, not "image 0"
            message = exc.message.removeprefix("image 0: ")
            raise type(exc)(f"image {position}: {message}", reason=exc.reason) from exc

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        await asyncio.to_thread(self._batcher.close)
        self._lanes.shutdown()
