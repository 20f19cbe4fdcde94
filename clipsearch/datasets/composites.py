"""Composite scenes: a demo scene of one category with another category's scene pasted at a
known box. Ground truth for ``POST /locate`` (is the best box on the pasted object?), used by
its tests and by ``bench/locate.py``.
"""

from __future__ import annotations

import io
import random

from PIL import Image
from pydantic import BaseModel

from clipsearch.datasets.scenes import SceneKind, draw_scene

Box = tuple[int, int, int, int]


class Composite(BaseModel):
    png: bytes
    box: Box  # where the object is, x1/y1 exclusive
    target: str
    background: str


def composite(target: str, background: str, *, size: int = 256, tile: int = 96,
              at: tuple[int, int] = (0, 0), seed: int = 0) -> Composite:
    """A ``size`` px background scene with a ``tile`` px scene of ``target`` at ``at``."""
    rng = random.Random(f"locate:{seed}:{target}:{background}:{at}")
    base = draw_scene(background, SceneKind.typical, rng, 96).resize(
        (size, size), Image.Resampling.BICUBIC)
    obj = draw_scene(target, SceneKind.typical, rng, 96).resize(
        (tile, tile), Image.Resampling.BICUBIC)
    base.paste(obj, at)
    out = io.BytesIO()
    base.save(out, format="PNG")
    return Composite(png=out.getvalue(), box=(at[0], at[1], at[0] + tile, at[1] + tile),
                     target=target, background=background)
