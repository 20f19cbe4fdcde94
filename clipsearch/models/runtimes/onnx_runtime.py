"""ONNX Runtime: both towers exported from the loaded model, cached on disk, fp32 or int8.

The export uses torch's TorchScript-based exporter (``dynamo=False``: the dynamo exporter
needs onnxscript). The text graph is traced once and takes any batch size and any sequence
length up to the model's maximum. Dynamic int8 (``quantize_dynamic``) is opt-in: it is the
fastest CPU path but drifts more than bf16 on trained weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import CLIPModel

from clipsearch.models.runtimes.torch_runtime import features

OPSET = 17
# Per-channel weights; 7-bit range avoids the u8*s8 saturation of AVX2 kernels without VNNI
# (measured on a ViT-B/32: text cos 0.9986 -> 0.9990, images 0.99967 -> 0.99971, same speed).
# Matrix products and the token embedding only: the patch embedding (a stride-32 Conv over raw
# pixels) stays fp32, because ORT's ConvInteger has no fast kernel: on a ViT-B/32 it took 14%
# of the int8 image tower's time for ~3% of its multiply-adds; fp32 Conv: 7% more images per
# CPU-second, cosine to fp32 unchanged (0.99971) (bench/encode_cpu.py).
QUANT_OPTIONS: dict[str, Any] = {"per_channel": True, "reduce_range": True,
                                 "op_types_to_quantize": ["MatMul", "Gather"]}
FILES = {"fp32": ("text.onnx", "vision.onnx"), "int8": ("text.int8.onnx", "vision.int8.onnx")}


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "clipsearch" / "onnx"


def cache_key(model_id: str, revision: str | None) -> str:
    """Model id + revision (+ the weight files' size and mtime for a local folder)."""
    parts: dict[str, Any] = {"model": model_id, "revision": revision, "opset": OPSET,
                             "torch": torch.__version__, "int8": QUANT_OPTIONS}
    folder = Path(model_id).expanduser()
    if folder.is_dir():
        parts["files"] = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                                for p in folder.glob("*.safetensors"))
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_id)[-48:]
    return f"{safe}-{digest}"


class _Vision(torch.nn.Module):
    def __init__(self, model: CLIPModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return features(self.model.get_image_features(pixel_values=pixel_values))


class _Text(torch.nn.Module):
    def __init__(self, model: CLIPModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return features(self.model.get_text_features(input_ids=input_ids,
                                                     attention_mask=attention_mask))


def export_onnx(model: CLIPModel, out_dir: Path, *, image_size: int) -> None:
    """Write ``text.onnx`` and ``vision.onnx`` (fp32) into ``out_dir``."""
    model = model.float().eval()
    ids = torch.tensor([[49406, 320, 1125, 539, 49407], [49406, 320, 49407, 49407, 49407]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Text(model), (ids, mask), str(out_dir / "text.onnx"),
            input_names=["input_ids", "attention_mask"], output_names=["embeds"],
            dynamic_axes={"input_ids": {0: "n", 1: "length"},
                          "attention_mask": {0: "n", 1: "length"}, "embeds": {0: "n"}},
            opset_version=OPSET, dynamo=False)
        torch.onnx.export(
            _Vision(model), (torch.zeros(2, 3, image_size, image_size),),
            str(out_dir / "vision.onnx"), input_names=["pixel_values"],
            output_names=["embeds"],
            dynamic_axes={"pixel_values": {0: "n"}, "embeds": {0: "n"}},
            opset_version=OPSET, dynamo=False)


def _not_from_quantizer(record: logging.LogRecord) -> bool:
    """onnxruntime's quantizer logs hundreds of per-tensor lines on the root logger."""
    return "/onnxruntime/quantization/" not in record.pathname.replace("\\", "/")


def quantize_int8(fp32_dir: Path, out_dir: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    root.addFilter(_not_from_quantizer)
    try:
        for src, dst in zip(FILES["fp32"], FILES["int8"], strict=True):
            quantize_dynamic(fp32_dir / src, out_dir / dst, weight_type=QuantType.QInt8,
                             **QUANT_OPTIONS)
    finally:
        root.removeFilter(_not_from_quantizer)


def ensure_onnx(model: CLIPModel, cache_dir: Path, key: str, *, precision: str,
                image_size: int) -> Path:
    """The cached export for ``key`` (built atomically on first use); returns its folder."""
    folder = cache_dir / key
    wanted = [folder / name for name in FILES[precision]]
    if all(p.is_file() for p in wanted):
        return folder
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=cache_dir))
    try:
        if all((folder / n).is_file() for n in FILES["fp32"]):
            for n in FILES["fp32"]:
                shutil.copy2(folder / n, tmp / n)
        else:
            export_onnx(model, tmp, image_size=image_size)
        if precision == "int8":
            quantize_int8(tmp, tmp)
        folder.mkdir(exist_ok=True)
        for p in tmp.iterdir():
            if p.suffix == ".onnx":
                os.replace(p, folder / p.name)  # each file appears whole or not at all
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


class OnnxRuntime:
    """Both towers (or, with ``towers="vision"``, the image tower alone) as ONNX Runtime
    sessions on the CPU."""

    def __init__(self, folder: Path, *, precision: str = "fp32", threads: int = 1,
                 towers: str = "both") -> None:
        import onnxruntime as ort

        if precision not in FILES:
            raise ValueError(f"unknown ONNX precision {precision!r}")
        if towers not in ("both", "vision"):
            raise ValueError(f"unknown towers {towers!r}; expected both or vision")
        self._precision = precision
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle intra-op threads sleep instead of spinning: with several threads (batch jobs)
        # spinning burns the cores a neighbour or the decoding thread needs; measured on a
        # shared 2-core box (bench/encode_cpu.py): 2-22% more images/s without it.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        text_file, vision_file = FILES[precision]
        providers = ["CPUExecutionProvider"]
        self._text = (ort.InferenceSession(str(folder / text_file), opts, providers=providers)
                      if towers == "both" else None)
        self._vision = ort.InferenceSession(str(folder / vision_file), opts,
                                            providers=providers)

    @property
    def name(self) -> str:
        return "onnx" if self._precision == "fp32" else "onnx-int8"

    @property
    def dtype(self) -> str:
        return "float32" if self._precision == "fp32" else "int8"

    @property
    def device(self) -> str:
        return "cpu"

    @property
    def towers(self) -> str:
        return "both" if self._text is not None else "vision"

    def text(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        if self._text is None:
            raise RuntimeError("this runtime holds the vision tower only")
        out = self._text.run(None, {"input_ids": np.ascontiguousarray(input_ids, np.int64),
                                    "attention_mask": np.ascontiguousarray(attention_mask,
                                                                           np.int64)})
        return np.asarray(out[0], dtype=np.float32)

    def image(self, pixels: np.ndarray) -> np.ndarray:
        out = self._vision.run(None, {"pixel_values": np.ascontiguousarray(pixels,
                                                                           np.float32)})
        return np.asarray(out[0], dtype=np.float32)
