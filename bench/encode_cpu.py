"""CPU inference options for the image tower (the feeder's whole job), against plain eager fp32.

Measured in one process, interleaved rounds (best kept), on a ViT-B/32-shaped random CLIP
(bench/feed_images.py's model, built once in ``--work-dir``) with every core as intra-op threads:

- eager fp32: transformers ``get_image_features`` (the baseline of issue 13);
- ONNX Runtime fp32 as the ``onnx`` runtime builds it (ORT_ENABLE_ALL, idle intra-op threads
  sleep), at several batch sizes, and with ORT's default of spinning idle threads;
- ONNX Runtime fp32 after ``onnxruntime.transformers.optimizer`` (model_type clip: attention,
  LayerNorm and GELU fusions);
- OpenVINO fp32 (only if ``openvino`` is importable: it is not a project dependency);
- ONNX Runtime int8 (``quantize_dynamic`` as the ``onnx-int8`` runtime builds it: matrix
  products only, the patch-embedding Conv kept fp32), and the same with the Conv quantized too
  (ConvInteger), the previous build.

Prints images/s, the ratio to eager, the minimum cosine to eager fp32, the CPU flags and the
load average. ``--cpu-time`` divides by the process's CPU seconds instead of wall seconds: on a
shared machine that compares the kernels' work (use it with ``--threads 1``).

    .venv/bin/python bench/encode_cpu.py --work-dir /tmp/bench-feed --batches 16 32
    .venv/bin/python bench/encode_cpu.py --work-dir /tmp/bench-feed --threads 1 --cpu-time
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

Contender = Callable[[np.ndarray], np.ndarray]


def _ort(path: Path, threads: int, spin: bool = True) -> Contender:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return lambda x: np.asarray(session.run(None, {"pixel_values": x})[0])


def _openvino(path: Path, threads: int) -> Contender | None:
    try:
        import openvino as ov
    except ImportError:
        return None
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU",
                                  {"INFERENCE_NUM_THREADS": threads,
                                   "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    return lambda x: np.asarray(request.infer({0: x})[0])


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
    import torch

    from bench.feed_images import build_base_clip, cpu_flags
    from clipsearch.models.loading import load_clip_parts
    from clipsearch.models.runtimes.onnx_runtime import ensure_onnx
    from clipsearch.models.runtimes.select import check_batch
    from clipsearch.models.runtimes.torch_runtime import features

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work-dir", type=Path, required=True)
    ap.add_argument("--batches", type=int, nargs="+", default=[16, 32])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--cpu-time", action="store_true",
                    help="images per CPU-second of this process instead of per wall second")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model_dir = build_base_clip(args.work_dir / "vit-b32")
    model = load_clip_parts(str(model_dir)).model.float().eval()
    folder = ensure_onnx(model, args.work_dir / "encode-cpu-onnx", "vit-b32",
                         precision="int8", image_size=224)  # fp32 and int8 files
    fused = folder / "vision.fused.onnx"
    if not fused.is_file():
        from onnxruntime.transformers.optimizer import optimize_model

        opt = optimize_model(str(folder / "vision.onnx"), model_type="clip", num_heads=12,
                             hidden_size=768, opt_level=0)
        print("transformers optimizer fusions:", opt.get_fused_operator_statistics())
        opt.save_model_to_file(str(fused))
    conv_int8 = folder / "vision.conv-int8.onnx"
    if not conv_int8.is_file():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(folder / "vision.onnx", conv_int8, weight_type=QuantType.QInt8,
                         per_channel=True, reduce_range=True)  # every op type: Conv too

    def eager(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = features(model.get_image_features(pixel_values=torch.from_numpy(x)))
            return out.numpy()

    t = args.threads
    contenders: dict[str, Contender] = {
        "eager fp32": eager,
        "onnx fp32, threads spinning": _ort(folder / "vision.onnx", t),
        "onnx fp32 (the onnx runtime)": _ort(folder / "vision.onnx", t, spin=False),
        "onnx fp32, transformers fusions": _ort(fused, t),
        "onnx int8 (the onnx-int8 runtime)": _ort(folder / "vision.int8.onnx", t, spin=False),
        "onnx int8, Conv quantized too": _ort(conv_int8, t, spin=False),
    }
    ov = _openvino(folder / "vision.onnx", t)
    if ov is not None:
        contenders["openvino fp32"] = ov
    check, _, _ = check_batch(224)  # the check batch auto's cosine bar is measured on
    rng = np.random.default_rng(0)
    pixels = np.ascontiguousarray(np.concatenate(
        [check, rng.normal(size=(max(args.batches) - len(check), 3, 224, 224))]
    ).astype(np.float32))
    ref = _unit(eager(pixels[:16]))
    cosine = {name: float(np.min(np.sum(_unit(fn(pixels[:16])) * ref, axis=1)))
              for name, fn in contenders.items()}
    clock = time.process_time if args.cpu_time else time.perf_counter
    best: dict[tuple[str, int], float] = {}
    for r in range(args.rounds):
        for b in args.batches:
            for name, fn in contenders.items():
                if name == "eager fp32" and b != args.batches[0]:
                    continue
                start = clock()
                fn(pixels[:b])
                rate = b / (clock() - start)
                best[(name, b)] = max(best.get((name, b), 0.0), rate)
        print(f"round {r + 1}/{args.rounds}, load average {os.getloadavg()[0]:.1f}", flush=True)
    unit = "CPU-second" if args.cpu_time else "wall second"
    print(f"\nCPU: {cpu_flags()}; {t} intra-op threads; best of {args.rounds} rounds; "
          f"images per {unit}")
    base = best[("eager fp32", args.batches[0])]
    print(f"{'contender':<36}{'batch':>6}{'images/s':>10}{'x eager':>9}{'cos min':>10}")
    for (name, b), rate in sorted(best.items(), key=lambda kv: -kv[1]):
        print(f"{name:<36}{b:>6}{rate:>10.2f}{rate / base:>9.2f}{cosine[name]:>10.6f}")


if __name__ == "__main__":
    main()
