"""Embed the patches of one image with whatever encoder the gateway holds.

In-process (``LocalEmbedder``): the crops are preprocessed in a worker thread and the whole
stack goes through ``ClipEncoder.embed_pixels`` in one model-thread call (no PNG round trip).
Any other ``Embedder`` (the remote encoder service): the crops travel as PNG bytes through
``embed_images`` in batches of at most ``batch`` images. Both give the same vectors up to the
encoder's own numerics, because PNG is lossless and the preprocessing is the same.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Sequence
from functools import partial

import numpy as np
from PIL import Image

from clipsearch.embedder import Embedder
from clipsearch.errors import BackendError
from clipsearch.models.local import LocalEmbedder
from clipsearch.models.preprocess import preprocess_batch


def _png(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def _png_all(crops: Sequence[Image.Image]) -> list[bytes]:
    return [_png(c) for c in crops]


LOCAL_CHUNK = 16  # patches per in-process model call
FAST_CHUNK_S = 0.05  # a chunk quicker than this: encode the rest in one call
REMOTE_PATCH_PX = 336  # the largest common CLIP input (ViT-L/14-336): crops sent no larger


def patch_size_for(embedder: Embedder) -> int:
    """The side to shrink large windows to before encoding: the in-process model's input
    size, else ``REMOTE_PATCH_PX`` (the remote encoder resizes again to its own)."""
    if isinstance(embedder, LocalEmbedder):
        return max(embedder.encoder.preprocess_spec.output_size)
    return REMOTE_PATCH_PX


async def embed_patches(embedder: Embedder, crops: Sequence[Image.Image], *,
                        batch: int = 64) -> np.ndarray:
    """Unit embeddings (n, dim) of ``crops``, in order."""
    if not crops:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    if isinstance(embedder, LocalEmbedder):
        encoder = embedder.encoder
        pixels = await asyncio.to_thread(preprocess_batch, list(crops),
                                         encoder.preprocess_spec)
        # One model-thread call per LOCAL_CHUNK patches, so search queries queued meanwhile
        # wait for one chunk, not for the whole grid (seconds with a ViT-B/32 on a CPU). When
        # a chunk is quick (a small model, a GPU) the rest goes in one call: each call costs
        # a thread hand-off (~2 ms), 20 % of the whole grid with the demo model.
        parts, start, size = [], 0, LOCAL_CHUNK
        while start < len(pixels):
            began = time.perf_counter()
            chunk = pixels[start:start + size]
            parts.append((await embedder.run(partial(encoder.embed_pixels, chunk))).vectors)
            start += len(chunk)
            if time.perf_counter() - began < FAST_CHUNK_S:
                size = len(pixels)
        return np.concatenate(parts, axis=0)
    blobs = await asyncio.to_thread(_png_all, crops)
    parts = []
    for start in range(0, len(blobs), batch):
        emb = await embedder.embed_images(blobs[start:start + batch])
        if emb.model_id != embedder.model_id or len(emb) != len(blobs[start:start + batch]):
            raise BackendError(f"the encoder answered {len(emb)} vectors from model "
                               f"{emb.model_id!r} for {len(blobs[start:start + batch])} "
                               f"patches of model {embedder.model_id!r}")
        parts.append(emb.vectors)
    return np.concatenate(parts, axis=0)
