"""Worker-side image preparation: read, decode (safely), preprocess. Picklable functions.

Each returns a ``Prepared``: the payload for the encoder, or the reason the image is unusable.
Nothing here raises for bad data, so one bad file never takes a worker or the run down.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from clipsearch.datasets.records import Reason
from clipsearch.embeddings import Embeddings
from clipsearch.errors import ImageTooLarge, InvalidImage
from clipsearch.models.images import decode_image
from clipsearch.models.preprocess import PreprocessSpec, image_pixels


@dataclass(frozen=True)
class Prepared:
    payload: np.ndarray | bytes | None = None
    reason: Reason | None = None
    detail: str = ""


@dataclass(frozen=True)
class Encoded:
    """One image's outcome of the encoding stage: its unit vector, or why it has none."""

    vector: np.ndarray | None = None
    reason: Reason | None = None
    detail: str = ""

    @classmethod
    def refused(cls, prep: Prepared) -> Encoded:
        return cls(reason=prep.reason, detail=prep.detail)


def prepare_all(fn: Callable[[str], Prepared], paths: Sequence[str]) -> list[Prepared]:
    """``fn`` over a batch of paths (one task for a thread or process pool)."""
    return [fn(p) for p in paths]


def embed_prepared(prepared: Sequence[Prepared],
                   embed_pixels: Callable[[np.ndarray], Embeddings]) -> list[Encoded]:
    """One ``Encoded`` per prepared image: the usable ones embedded in one pixel batch, the
    others refused with their reason."""
    out = [Encoded.refused(p) for p in prepared]
    good = [i for i, p in enumerate(prepared) if p.reason is None]
    if good:
        pixels = np.stack([prepared[i].payload for i in good])  # type: ignore[misc]
        vectors = embed_pixels(pixels).vectors
        for row, i in enumerate(good):
            out[i] = Encoded(vector=vectors[row])
    return out


def _read(path: str) -> bytes | Prepared:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return Prepared(reason=Reason.missing_file, detail=f"{path} not found")
    except OSError as exc:
        return Prepared(reason=Reason.invalid_image, detail=f"cannot read {path}: {exc}")


def _refused(exc: InvalidImage) -> Prepared:
    reason = Reason.image_too_large if isinstance(exc, ImageTooLarge) else Reason.invalid_image
    return Prepared(reason=reason, detail=exc.message)


def _decode(data: bytes, max_bytes: int, max_pixels: int) -> object:
    try:
        return decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    except InvalidImage as exc:
        return _refused(exc)


def prepare_pixels(path: str, *, spec: PreprocessSpec, max_bytes: int,
                   max_pixels: int) -> Prepared:
    """Pixel values (3, S, S) float32 for an in-process CLIP model, made as the encoder
    service and the API make them (``image_pixels``): the same file gets the same vector
    whichever path feeds it, and a 100-megapixel JPEG costs a fraction of its full decode."""
    data = _read(path)
    if isinstance(data, Prepared):
        return data
    try:
        return Prepared(payload=image_pixels(data, spec, max_bytes=max_bytes,
                                             max_pixels=max_pixels))
    except InvalidImage as exc:
        return _refused(exc)
    except (OSError, ValueError) as exc:
        return Prepared(reason=Reason.invalid_image, detail=f"preprocessing failed: {exc}")


def prepare_bytes(path: str, *, max_bytes: int, max_pixels: int) -> Prepared:
    """The file's bytes, checked to decode, for an encoder that takes encoded images."""
    data = _read(path)
    if isinstance(data, Prepared):
        return data
    img = _decode(data, max_bytes, max_pixels)
    return img if isinstance(img, Prepared) else Prepared(payload=data)
