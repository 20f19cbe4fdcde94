"""PyTorch runtime: fp32 reference, bf16 on CPUs that support it, fp16 on CUDA."""

from __future__ import annotations

import copy
from typing import cast

import numpy as np
import torch
from transformers import CLIPModel

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def features(out: object) -> torch.Tensor:
    """``get_*_features`` returns a tensor in some transformers versions, an output in others."""
    if isinstance(out, torch.Tensor):
        return out
    pooled = getattr(out, "pooler_output", None)
    if isinstance(pooled, torch.Tensor):
        return pooled
    raise TypeError(f"unexpected CLIP features output: {type(out).__name__}")


def cpu_supports_bf16() -> bool:
    """True where the CPU has native bf16 arithmetic (AVX-512 BF16 / AMX), so bf16 is fast."""
    if not torch.backends.mkldnn.is_available():
        return False
    checker = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(checker()) if checker is not None else False


TOWERS = ("both", "vision")


class VisionTower(torch.nn.Module):
    """The image side of a CLIPModel alone (``get_image_features`` without the text tower),
    for image-only users such as the feeder's workers: the text weights can be freed."""

    def __init__(self, model: CLIPModel) -> None:
        super().__init__()
        self.vision_model = model.vision_model
        self.visual_projection = model.visual_projection

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pooled = self.vision_model(pixel_values=pixel_values, return_dict=True).pooler_output
        return cast(torch.Tensor, self.visual_projection(pooled))


class TorchRuntime:
    """CLIPModel.get_text_features / get_image_features on one device, in one dtype.

    When ``dtype`` is not float32 a copy is cast and the caller's fp32 model is untouched.
    ``towers="vision"`` keeps only the image side (``text`` then raises): the runtime holds
    no reference to the text tower, so it is freed with the caller's model.
    """

    def __init__(self, model: CLIPModel, *, device: str = "cpu", dtype: str = "float32",
                 towers: str = "both") -> None:
        if dtype not in _DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(_DTYPES)}")
        if towers not in TOWERS:
            raise ValueError(f"unknown towers {towers!r}; expected one of {TOWERS}")
        self._device = torch.device(device)
        self._dtype_name = dtype
        self._dtype = _DTYPES[dtype]
        module: torch.nn.Module = model if towers == "both" else VisionTower(model)
        if dtype != "float32":
            module = copy.deepcopy(module)
        # PreTrainedModel.to's stub is too narrow for mypy
        module = module.to(self._device).to(self._dtype).eval()
        self._model: CLIPModel | None = cast(CLIPModel, module) if towers == "both" else None
        self._vision: torch.nn.Module | None = module if towers == "vision" else None

    @property
    def name(self) -> str:
        return "torch" if self._dtype_name == "float32" else f"torch-{_short(self._dtype_name)}"

    @property
    def dtype(self) -> str:
        return self._dtype_name

    @property
    def device(self) -> str:
        return str(self._device)

    @property
    def towers(self) -> str:
        return "both" if self._model is not None else "vision"

    @property
    def model(self) -> CLIPModel:
        if self._model is None:
            raise RuntimeError("this runtime holds the vision tower only")
        return self._model

    def text(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        model = self.model
        ids = torch.from_numpy(np.ascontiguousarray(input_ids, dtype=np.int64)).to(self._device)
        mask = torch.from_numpy(np.ascontiguousarray(attention_mask, dtype=np.int64))
        with torch.inference_mode():
            out = model.get_text_features(input_ids=ids, attention_mask=mask.to(self._device))
            return features(out).float().cpu().numpy()

    def image(self, pixels: np.ndarray) -> np.ndarray:
        px = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))
        px = px.to(device=self._device, dtype=self._dtype)
        with torch.inference_mode():
            if self._vision is not None:
                return cast(torch.Tensor, self._vision(px)).float().cpu().numpy()
            out = self.model.get_image_features(pixel_values=px)
            return features(out).float().cpu().numpy()


def _short(dtype: str) -> str:
    return {"bfloat16": "bf16", "float16": "fp16"}.get(dtype, dtype)
