"""Draw a patch heatmap over its image as a PNG (with the best box outlined)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from clipsearch.models.patches import PatchScores, heatmap

MAX_RENDER_PX = 1024  # the PNG's long side; larger images are shown scaled down
_STOPS = np.array([  # a dark-blue -> cyan -> yellow -> red ramp, position then RGB
    [0.00, 20, 20, 120], [0.35, 0, 170, 220], [0.65, 250, 230, 40], [1.00, 220, 20, 20],
], dtype=np.float32)


def colourize(values: np.ndarray) -> np.ndarray:
    """(h, w) values in [0, 1] -> (h, w, 3) uint8 colours along the ramp."""
    v = np.clip(values, 0.0, 1.0)
    rgb = [np.interp(v, _STOPS[:, 0], _STOPS[:, k]) for k in (1, 2, 3)]
    return np.stack(rgb, axis=-1).astype(np.uint8)


def render_overlay(img: Image.Image, scores: PatchScores, *, opacity: float = 0.5) -> bytes:
    """The image with the heatmap blended in and the best window outlined, as PNG bytes."""
    factor = min(1.0, MAX_RENDER_PX / max(img.width, img.height))
    size = (max(1, round(img.width * factor)), max(1, round(img.height * factor)))
    base = img.convert("RGB").resize(size, Image.Resampling.BILINEAR) if factor < 1 else \
        img.convert("RGB")
    heat = Image.fromarray((heatmap(scores) * 255).astype(np.uint8), mode="L")
    heat = heat.resize(size, Image.Resampling.BILINEAR)
    colour = Image.fromarray(colourize(np.asarray(heat, dtype=np.float32) / 255.0), mode="RGB")
    out = Image.blend(base, colour, opacity)
    x0, y0, x1, y1 = (round(c * factor) for c in scores.best.box)
    width = max(2, round(max(size) / 200))
    ImageDraw.Draw(out).rectangle((x0, y0, x1 - 1, y1 - 1), outline=(255, 255, 255), width=width)
    buf = io.BytesIO()
    out.save(buf, format="PNG", optimize=False)
    return buf.getvalue()
