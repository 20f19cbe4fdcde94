"""Build a runtime by name, or pick one: ``auto`` = the fastest runtime that stays within
cos >= 0.999 of the fp32 reference on a check batch, measured at load time on this machine
(CPU features differ: bf16 is fast only with native bf16 arithmetic, so it is measured, not
assumed). int8 is opt-in: ``onnx-int8`` by name, or ``allow_int8`` (``CLIPSEARCH_AUTO_INT8``),
which makes it one more ``auto`` candidate held to the same cosine bar.

``towers="vision"`` builds the image side only (image-only users such as the feeder's
workers); ``auto`` then checks and times the image tower only."""

from __future__ import annotations

import importlib.util
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import CLIPModel

from clipsearch.models.runtimes.base import Runtime
from clipsearch.models.runtimes.onnx_runtime import (
    OnnxRuntime,
    cache_key,
    default_cache_dir,
    ensure_onnx,
)
from clipsearch.models.runtimes.torch_runtime import TorchRuntime, cpu_supports_bf16

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "torch-bf16", "torch-fp16", "onnx", "onnx-int8")
MIN_COSINE = 0.999
TIMING_ROUNDS = 2


@dataclass(frozen=True)
class RuntimeOptions:
    device: str = "cpu"
    threads: int = 1
    model_id: str = "clip"
    revision: str | None = None
    cache_dir: Path = field(default_factory=default_cache_dir)
    image_size: int = 224
    towers: str = "both"  # or "vision": the image tower only
    allow_int8: bool = False  # auto may pick onnx-int8 (when it clears MIN_COSINE)
    # real images (n, 3, S, S), preprocessed: auto's cosine bar holds on them too
    check_pixels: np.ndarray | None = None


@dataclass(frozen=True)
class Trial:
    name: str
    seconds: float
    min_cosine: float


def onnx_available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def build_runtime(name: str, model: CLIPModel, opts: RuntimeOptions) -> Runtime:
    """One runtime by name (not ``auto``)."""
    if name == "torch":
        return TorchRuntime(model, device=opts.device, towers=opts.towers)
    if name == "torch-bf16":
        return TorchRuntime(model, device=opts.device, dtype="bfloat16", towers=opts.towers)
    if name == "torch-fp16":
        if not opts.device.startswith("cuda"):
            raise ValueError("torch-fp16 needs a CUDA device (CLIPSEARCH_DEVICE=cuda)")
        return TorchRuntime(model, device=opts.device, dtype="float16", towers=opts.towers)
    if name in ("onnx", "onnx-int8"):
        if not onnx_available():
            raise ValueError(f"runtime {name!r} needs onnxruntime (pip install onnxruntime)")
        if not opts.device.startswith("cpu"):
            raise ValueError(f"runtime {name!r} runs on the CPU only")
        precision = "int8" if name == "onnx-int8" else "fp32"
        folder = ensure_onnx(model, opts.cache_dir, cache_key(opts.model_id, opts.revision),
                             precision=precision, image_size=opts.image_size)
        return OnnxRuntime(folder, precision=precision, threads=opts.threads,
                           towers=opts.towers)
    raise ValueError(f"unknown runtime {name!r}; expected one of {', '.join(RUNTIMES)}")


def check_batch(image_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels (4 smooth-noise images) and an 8-token text batch for parity and timing."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(4, 3, 8, 8)).astype(np.float32)
    reps = -(-image_size // 8)
    pixels = np.kron(coarse, np.ones((1, 1, reps, reps), np.float32))[..., :image_size,
                                                                       :image_size]
    pixels = pixels + 0.3 * rng.normal(size=pixels.shape).astype(np.float32)
    ids = np.array([[49406, 320, 1125, 539, 320, 2368, 49407, 49407],
                    [49406, 5123, 1710, 539, 320, 3360, 2445, 49407]], dtype=np.int64)
    mask = np.array([[1, 1, 1, 1, 1, 1, 1, 0], [1] * 8], dtype=np.int64)
    return np.ascontiguousarray(pixels), ids, mask


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _cosines(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.min(np.sum(_unit(a) * _unit(b), axis=1)))


def _time(rt: Runtime, pixels: np.ndarray, ids: np.ndarray, mask: np.ndarray,
          text: bool = True) -> float:
    rt.image(pixels[:1])
    if text:
        rt.text(ids[:1], mask[:1])  # warm-up
    start = time.perf_counter()
    rt.image(pixels)
    for _ in range(4 if text else 0):
        rt.text(ids[:1], mask[:1])
    return time.perf_counter() - start


def auto_candidates(opts: RuntimeOptions) -> list[str]:
    if opts.device.startswith("cuda"):
        names = ["torch", "torch-fp16"]
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            names.append("torch-bf16")
        return names
    names = ["torch"]
    if cpu_supports_bf16():
        names.append("torch-bf16")
    if onnx_available():
        names.append("onnx")
        if opts.allow_int8:
            names.append("onnx-int8")
    return names


def select_runtime(model: CLIPModel, opts: RuntimeOptions,
                   candidates: list[str] | None = None,
                   rounds: int = TIMING_ROUNDS) -> tuple[Runtime, list[Trial]]:
    """The fastest candidate within ``MIN_COSINE`` of torch fp32, and every trial's numbers.

    Candidates are timed in ``rounds`` interleaved rounds and each keeps its best time, so a
    busy neighbour during one candidate's turn does not decide the choice. With
    ``opts.towers == "vision"`` only the image tower is checked and timed. With
    ``opts.check_pixels`` (real images) every candidate must also clear the bar on them."""
    pixels, ids, mask = check_batch(opts.image_size)
    real = opts.check_pixels if opts.check_pixels is not None and len(opts.check_pixels) else None
    text = opts.towers == "both"
    reference = TorchRuntime(model, device=opts.device, towers=opts.towers)
    ref_img = reference.image(pixels)
    ref_txt = reference.text(ids, mask) if text else None
    ref_real = reference.image(real) if real is not None else None
    built: list[tuple[str, Runtime, float]] = []
    for name in candidates or auto_candidates(opts):
        try:
            rt = reference if name == "torch" else build_runtime(name, model, opts)
            cos = _cosines(rt.image(pixels), ref_img)
            if real is not None and ref_real is not None and name != "torch":
                cos = min(cos, _cosines(rt.image(real), ref_real))
            if ref_txt is not None:
                cos = min(cos, _cosines(rt.text(ids, mask), ref_txt))
        except Exception as exc:  # a runtime that fails to build is skipped, not fatal
            log.warning("runtime %s unavailable: %s", name, exc)
            continue
        built.append((name, rt, cos))
    seconds = [float("inf")] * len(built)
    for _ in range(max(1, rounds)):
        for i, (_, rt, _) in enumerate(built):
            seconds[i] = min(seconds[i], _time(rt, pixels, ids, mask, text))
    trials = [Trial(name=name, seconds=secs, min_cosine=cos)
              for (name, _, cos), secs in zip(built, seconds, strict=True)]
    usable = [(secs, rt) for (_, rt, cos), secs in zip(built, seconds, strict=True)
              if cos >= MIN_COSINE]
    assert usable  # torch fp32 always qualifies
    return min(usable, key=lambda pair: pair[0])[1], trials


def machine_summary() -> str:
    """The CPU features that decide which runtime is fast, e.g. ``cpu=AVX2 native_bf16=False``."""
    return (f"cpu={torch.backends.cpu.get_cpu_capability()} "
            f"native_bf16={cpu_supports_bf16()}")


def auto_reason(trials: list[Trial]) -> str:
    """Why ``auto`` chose what it chose, for the one log line."""
    measured = ", ".join(f"{t.name} {t.seconds * 1000:.0f} ms cos {t.min_cosine:.5f}"
                         for t in trials)
    return (f"auto: the fastest within cos >= {MIN_COSINE} of fp32 on the check batch "
            f"({measured})")
