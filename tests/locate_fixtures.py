"""Generated images with a known object at a known place, for ``POST /locate``.

``red_square``: a flat grey image with a red square, for a fake encoder that "sees" red. (The
composites of demo scenes, a known object on a known background, are in the core:
``clipsearch.datasets.composites``, shared with ``bench/locate.py``.)
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from clipsearch.datasets.composites import Box
from clipsearch.embeddings import Embeddings, l2_normalize


def red_square(*, width: int = 256, height: int = 256, box: Box = (160, 32, 224, 96),
               fmt: str = "PNG") -> bytes:
    img = Image.new("RGB", (width, height), (128, 128, 128))
    ImageDraw.Draw(img).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=(230, 20, 20))
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()


def redness(img: Image.Image) -> float:
    """Share of clearly red pixels."""
    a = np.asarray(img.convert("RGB"), dtype=np.int16)
    return float(np.mean((a[..., 0] > 180) & (a[..., 1] < 80) & (a[..., 2] < 80)))


class RedSeeingEmbedder:
    """A fake ``Embedder`` over bytes only (like the remote encoder): an image's vector points
    towards axis 0 in proportion to its share of red pixels; the text "red" is axis 0, any other
    text axis 2. Records the batch sizes it was asked for."""

    def __init__(self, dim: int = 8) -> None:
        self._dim = dim
        self.batches: list[int] = []

    @property
    def model_id(self) -> str:
        return "fake-red"

    @property
    def dim(self) -> int:
        return self._dim

    async def embed_texts(self, texts: Sequence[str]) -> Embeddings:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i, 0 if "red" in t else 2] = 1.0
        return Embeddings(model_id=self.model_id, vectors=out)

    async def embed_images(self, images: Sequence[bytes]) -> Embeddings:
        self.batches.append(len(images))
        out = np.zeros((len(images), self._dim), dtype=np.float32)
        for i, data in enumerate(images):
            r = redness(Image.open(io.BytesIO(data)))
            out[i, 0], out[i, 1] = r, 1.0 - r + 1e-3
        return Embeddings(model_id=self.model_id, vectors=l2_normalize(out))

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
