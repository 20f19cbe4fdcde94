"""Image augmentation for contrastive training, written with PIL and numpy.

torchvision cannot be installed beside this torch build, so the usual transforms are written
here: random resized crop, horizontal and vertical flips and 90-degree turns (aerial images
have no "up"), and colour jitter (brightness, contrast, saturation, hue).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageEnhance
from pydantic import BaseModel, ConfigDict, Field


class AugmentConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    scale: tuple[float, float] = (0.5, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = Field(0.5, ge=0, le=1)
    vflip: float = Field(0.5, ge=0, le=1)
    rotate90: bool = True
    brightness: float = Field(0.2, ge=0, le=1)
    contrast: float = Field(0.2, ge=0, le=1)
    saturation: float = Field(0.2, ge=0, le=1)
    hue: float = Field(0.03, ge=0, le=0.5)


def random_resized_crop(img: Image.Image, rng: np.random.Generator, out_size: tuple[int, int],
                        scale: tuple[float, float], ratio: tuple[float, float]) -> Image.Image:
    """A random area (fraction ``scale`` of the image, aspect in ``ratio``) resized to size."""
    w, h = img.size
    area = w * h
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_r))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            box = (left, top, left + cw, top + ch)
            break
    else:  # fall back to the central square
        side = min(w, h)
        box = ((w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2)
    oh, ow = out_size
    return img.resize((ow, oh), Image.Resampling.BICUBIC, box=box)


def _shift_hue(img: Image.Image, shift: float) -> Image.Image:
    hsv = np.asarray(img.convert("HSV"), dtype=np.uint8).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + round(shift * 255)) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")


def colour_jitter(img: Image.Image, rng: np.random.Generator, cfg: AugmentConfig) -> Image.Image:
    ops = [
        (ImageEnhance.Brightness, cfg.brightness),
        (ImageEnhance.Contrast, cfg.contrast),
        (ImageEnhance.Color, cfg.saturation),
    ]
    for i in rng.permutation(len(ops)):
        enhancer, amount = ops[int(i)]
        if amount > 0:
            img = enhancer(img).enhance(float(rng.uniform(1 - amount, 1 + amount)))
    if cfg.hue > 0:
        img = _shift_hue(img, float(rng.uniform(-cfg.hue, cfg.hue)))
    return img


def augment(img: Image.Image, rng: np.random.Generator, cfg: AugmentConfig,
            out_size: tuple[int, int]) -> Image.Image:
    """One random view of ``img`` at ``out_size`` (height, width)."""
    img = img.convert("RGB")
    if not cfg.enabled:
        return img
    img = random_resized_crop(img, rng, out_size, cfg.scale, cfg.ratio)
    if rng.random() < cfg.hflip:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < cfg.vflip:
        img = img.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    if cfg.rotate90:
        turns = int(rng.integers(0, 4))
        if turns:
            img = img.transpose([Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180,
                                 Image.Transpose.ROTATE_270][turns - 1])
    return colour_jitter(img, rng, cfg)
