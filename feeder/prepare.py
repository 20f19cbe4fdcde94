"""Worker-side image preparation: read, decode (safely), preprocess. Picklable functions.

Each returns a ``Prepared``: the payload for the encoder, or the reason the image is unusable.
Nothing here raises for bad data, so one bad file never takes a worker or the run down.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import TypeVar

import numpy as np

from clipsearch.datasets.records import Reason
from clipsearch.errors import ImageTooLarge, InvalidImage
from clipsearch.models.images import decode_image
from clipsearch.models.preprocess import PreprocessSpec, preprocess

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Prepared:
    payload: np.ndarray | bytes | None = None
    reason: Reason | None = None
    detail: str = ""


def _read(path: str) -> bytes | Prepared:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return Prepared(reason=Reason.missing_file, detail=f"{path} not found")
    except OSError as exc:
        return Prepared(reason=Reason.invalid_image, detail=f"cannot read {path}: {exc}")


def _decode(data: bytes, max_bytes: int, max_pixels: int) -> object:
    try:
        return decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    except ImageTooLarge as exc:
        return Prepared(reason=Reason.image_too_large, detail=exc.message)
    except InvalidImage as exc:
        return Prepared(reason=Reason.invalid_image, detail=exc.message)


def prepare_pixels(path: str, *, spec: PreprocessSpec, max_bytes: int,
                   max_pixels: int) -> Prepared:
    """Pixel values (3, S, S) float32 for an in-process CLIP model."""
    data = _read(path)
    if isinstance(data, Prepared):
        return data
    img = _decode(data, max_bytes, max_pixels)
    if isinstance(img, Prepared):
        return img
    try:
        return Prepared(payload=preprocess(img, spec))  # type: ignore[arg-type]
    except (OSError, ValueError) as exc:
        return Prepared(reason=Reason.invalid_image, detail=f"preprocessing failed: {exc}")


def prepare_bytes(path: str, *, max_bytes: int, max_pixels: int) -> Prepared:
    """The file's bytes, checked to decode, for an encoder that takes encoded images."""
    data = _read(path)
    if isinstance(data, Prepared):
        return data
    img = _decode(data, max_bytes, max_pixels)
    return img if isinstance(img, Prepared) else Prepared(payload=data)


def bounded_map(fn: Callable[[T], R], items: Iterable[T], *, workers: int,
                window: int) -> Iterator[R]:
    """``map(fn, items)`` in order, on ``workers`` processes (0: inline), with at most
    ``window`` results in flight so memory stays flat on any dataset size."""
    if workers <= 0:
        yield from map(fn, items)
        return
    # spawn: the parent may hold torch threads; a forked child must not inherit them.
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
    queue: deque[Future[R]] = deque()
    try:
        for item in items:
            queue.append(pool.submit(fn, item))
            if len(queue) >= window:
                yield queue.popleft().result()
        while queue:
            yield queue.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
