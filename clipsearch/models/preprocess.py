"""CLIP image preprocessing as a plain, picklable function (the feeder runs it in workers).

Same steps and numbers as transformers' CLIP image processor (PIL resize of the 8-bit image,
centre crop with zero padding, rescale, normalise) without its per-call overhead: the
processor is ~2x slower per image and is not needed at serving time. A test checks the two
agree within a small tolerance.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from clipsearch.models.images import decode_image

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class PreprocessSpec(BaseModel):
    """What a CLIP image processor does, as data.

    ``shortest_edge`` resizes keeping the aspect ratio; else ``resize_hw`` resizes to a fixed
    (height, width). ``crop_hw`` is the centre crop, and the output size.
    """

    model_config = ConfigDict(frozen=True)

    shortest_edge: int | None = Field(224, ge=1)
    resize_hw: tuple[int, int] | None = None
    crop_hw: tuple[int, int] = (224, 224)
    do_resize: bool = True
    do_center_crop: bool = True
    rescale_factor: float = 1 / 255
    do_rescale: bool = True
    do_normalize: bool = True
    mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
    std: tuple[float, float, float] = OPENAI_CLIP_STD
    resample: int = int(Image.Resampling.BICUBIC)

    @property
    def output_size(self) -> tuple[int, int]:
        if self.do_center_crop:
            return self.crop_hw
        if self.resize_hw is not None:
            return self.resize_hw
        raise ValueError("output size varies with the image: no crop and no fixed resize")

    @classmethod
    def from_processor_config(cls, cfg: Mapping[str, Any]) -> PreprocessSpec:
        """From a processor's ``to_dict()`` or a ``preprocessor_config.json`` mapping."""
        size = cfg.get("size") or {"shortest_edge": 224}
        if isinstance(size, int):
            size = {"shortest_edge": size}
        crop = cfg.get("crop_size") or size
        if isinstance(crop, int):
            crop = {"height": crop, "width": crop}
        shortest = size.get("shortest_edge")
        resize_hw = None if shortest else (int(size["height"]), int(size["width"]))
        if "height" in crop:
            crop_hw = (int(crop["height"]), int(crop["width"]))
        else:
            crop_hw = (int(crop["shortest_edge"]), int(crop["shortest_edge"]))
        resample = cfg.get("resample")
        return cls(
            shortest_edge=int(shortest) if shortest else None,
            resize_hw=resize_hw,
            crop_hw=crop_hw,
            do_resize=bool(cfg.get("do_resize", True)),
            do_center_crop=bool(cfg.get("do_center_crop", True)),
            rescale_factor=float(cfg.get("rescale_factor", 1 / 255)),
            do_rescale=bool(cfg.get("do_rescale", True)),
            do_normalize=bool(cfg.get("do_normalize", True)),
            mean=_triple(cfg.get("image_mean", OPENAI_CLIP_MEAN)),
            std=_triple(cfg.get("image_std", OPENAI_CLIP_STD)),
            resample=int(Image.Resampling.BICUBIC) if resample is None else int(resample),
        )


def _triple(v: Any) -> tuple[float, float, float]:
    if isinstance(v, (int, float)):
        return (float(v),) * 3
    a, b, c = (float(x) for x in v)
    return (a, b, c)


def resize_size(width: int, height: int, spec: PreprocessSpec) -> tuple[int, int]:
    """(width, height) after the resize step (transformers' rule: the long side truncated)."""
    if spec.shortest_edge is None:
        assert spec.resize_hw is not None
        return spec.resize_hw[1], spec.resize_hw[0]
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = spec.shortest_edge, int(spec.shortest_edge * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def preprocess(img: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """An RGB image as CLIP pixel values: float32 array of shape (3, H, W)."""
    if img.mode != "RGB":
        img = img.convert("RGB")
    if spec.do_resize:
        img = img.resize(resize_size(img.width, img.height, spec),
                         resample=Image.Resampling(spec.resample))
    if spec.do_center_crop:
        ch, cw = spec.crop_hw
        top, left = (img.height - ch) // 2, (img.width - cw) // 2
        img = img.crop((left, top, left + cw, top + ch))  # pads with zeros when too small
    arr = np.asarray(img, dtype=np.float32)
    scale = np.float32(spec.rescale_factor if spec.do_rescale else 1.0)
    if spec.do_normalize:
        std = np.asarray(spec.std, dtype=np.float32)
        arr = arr * (scale / std) - np.asarray(spec.mean, dtype=np.float32) / std
    elif spec.do_rescale:
        arr = arr * scale
    return np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32)


def image_pixels(data: bytes, spec: PreprocessSpec, *, max_bytes: int,
                 max_pixels: int) -> np.ndarray:
    """Untrusted image bytes as CLIP pixel values (3, H, W): decoded safely, a large image no
    larger than twice the model's input (``decode_image``), then preprocessed. The one way from
    bytes to pixels, so the encoder service, the API and the feeder give a file the same
    pixels. Raises ``InvalidImage`` / ``ImageTooLarge`` for bad data."""
    img = decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels,
                       target_for=partial(resize_size, spec=spec))
    return preprocess(img, spec)


def preprocess_batch(images: list[Image.Image], spec: PreprocessSpec) -> np.ndarray:
    """Stacked pixel values, shape (n, 3, H, W)."""
    h, w = spec.output_size
    out = np.empty((len(images), 3, h, w), dtype=np.float32)
    for i, img in enumerate(images):
        out[i] = preprocess(img, spec)
    return out
