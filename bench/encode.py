"""Encoder benchmark: images/s and text latency per runtime vs plain transformers eager fp32.

A ViT-B/32-sized CLIP with random weights (``CLIPConfig()`` defaults: the tiny test model is
too small to mean anything) and the real CLIP tokenizer. Every number is measured in the same
run, so the ratios hold even on a busy machine where absolute numbers are noisy.

    .venv/bin/python bench/encode.py                 # CPU, all runtimes
    .venv/bin/python bench/encode.py --device cuda    # GPU: torch fp32 vs fp16
    .venv/bin/python bench/encode.py --runtimes torch onnx --images 16
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from transformers import CLIPConfig, CLIPModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clipsearch.models.bpe import build_clip_tokenizer
from clipsearch.models.model import ClipEncoder
from clipsearch.models.preprocess import PreprocessSpec
from clipsearch.models.runtimes.base import Runtime
from clipsearch.models.runtimes.select import (
    RuntimeOptions,
    build_runtime,
    select_runtime,
)
from clipsearch.models.runtimes.torch_runtime import cpu_supports_bf16, features

QUERIES = ["a photo of a cat", "an airport near the sea", "dense residential area",
           "a green park with trees", "a river through the city", "boats in the harbour",
           "a baseball field at night", "farmland with a pond"]  # ~6-8 tokens each


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _embed_one(encoder: ClipEncoder, text: str) -> object:
    return encoder.embed_texts([text])


def _best(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--images", type=int, default=16, help="images per timed batch")
    ap.add_argument("--repeats", type=int, default=3,
                    help="interleaved image rounds (best is kept)")
    ap.add_argument("--queries", type=int, default=40, help="text queries for p50/p95")
    ap.add_argument("--runtimes", nargs="*", default=None,
                    help="default: torch torch-bf16 onnx onnx-int8 (CPU); torch torch-fp16")
    ap.add_argument("--no-auto", action="store_true", help="skip the auto selection")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="clipsearch-bench-onnx-") as tmp:
        args.cache_dir = tmp  # the ViT-B/32 exports (~0.7 GB) are removed afterwards
        return _run(args)


def _run(args: argparse.Namespace) -> int:

    torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    names = args.runtimes or (["torch", "torch-fp16"] if cuda
                              else ["torch", "torch-bf16", "onnx", "onnx-int8"])
    cap = torch.backends.cpu.get_cpu_capability()
    print(f"device={args.device} threads={args.threads} cpu={cap}"
          f" native_bf16={cpu_supports_bf16()} torch={torch.__version__}")

    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig()).eval()  # ViT-B/32 sized, random weights
    tokenizer = build_clip_tokenizer()
    spec = PreprocessSpec()
    rng = np.random.default_rng(0)
    pixels = rng.normal(size=(args.images, 3, 224, 224)).astype(np.float32)
    base_model = model.to(args.device)
    px = torch.from_numpy(pixels).to(args.device)

    # --- the contenders: plain transformers eager fp32 (the baseline) and each runtime ---
    def eager_images() -> object:
        with torch.no_grad():
            out = features(base_model.get_image_features(pixel_values=px))
        if cuda:
            torch.cuda.synchronize()
        return out

    def eager_text(pad77: bool) -> Callable[[str], object]:
        def run(q: str) -> object:
            enc = tokenizer([q], return_tensors="pt", truncation=True,
                            padding="max_length" if pad77 else True, max_length=77)
            with torch.no_grad():
                out = features(base_model.get_text_features(
                    **{k: v.to(args.device) for k, v in enc.items()}))
            return out.cpu()
        return run

    with torch.no_grad():
        ref = features(base_model.get_image_features(pixel_values=px)).float().cpu().numpy()
        ref_ids = tokenizer(QUERIES, padding=True, return_tensors="pt")
        ref_txt = features(base_model.get_text_features(
            **{k: v.to(args.device) for k, v in ref_ids.items()})).float().cpu().numpy()

    cache = Path(args.cache_dir)
    opts = RuntimeOptions(device=args.device, threads=args.threads, model_id="bench-vit-b32",
                          cache_dir=cache)
    images_fn: dict[str, Callable[[], object]] = {"eager fp32": eager_images}
    text_fn: dict[str, Callable[[str], object]] = {"eager fp32": eager_text(False),
                                                   "eager pad-77": eager_text(True)}
    cosine: dict[str, float] = {"eager fp32": 1.0}
    built: dict[str, float] = {}
    for name in names:
        try:
            start = time.perf_counter()
            rt: Runtime = build_runtime(name, model, opts)
            built[name] = time.perf_counter() - start
        except ValueError as exc:
            print(f"{name:<14}skipped: {exc}")
            continue
        encoder = ClipEncoder(model_id="bench", tokenizer=tokenizer, spec=spec, runtime=rt,
                              dim=512, max_text_tokens=77, image_batch=args.images,
                              text_cache_size=0)
        cos_img = float(np.min(np.sum(_unit(rt.image(pixels)) * _unit(ref), axis=1)))
        got_txt = encoder.embed_texts(QUERIES).vectors
        cos_txt = float(np.min(np.sum(got_txt * _unit(ref_txt), axis=1)))
        cosine[name] = min(cos_img, cos_txt)
        images_fn[name] = partial(rt.image, pixels)
        text_fn[name] = partial(_embed_one, encoder)

    # Interleaved (round-robin) so a busy neighbour slows every contender alike.
    best = {name: float("inf") for name in images_fn}
    for _ in range(args.repeats):
        for name, run_images in images_fn.items():
            best[name] = min(best[name], _best(run_images, 1))
    lat: dict[str, list[float]] = {name: [] for name in text_fn}
    for run_text in text_fn.values():
        run_text("warm up")
    for i in range(args.queries):
        q = QUERIES[i % len(QUERIES)] + f" {i}"  # distinct texts: no cache hits
        for name, run_text in text_fn.items():
            if name == "eager pad-77" and i % 4:
                continue  # the slow baseline gets a quarter of the samples
            start = time.perf_counter()
            run_text(q)
            lat[name].append((time.perf_counter() - start) * 1000)

    eager_ips = args.images / best["eager fp32"]
    e50 = statistics.median(lat["eager fp32"])
    results: dict[str, float] = {}
    print(f"\n{'runtime':<14}{'images/s':>10}{'x eager':>9}{'cos min':>10}"
          f"{'text p50':>10}{'p95 ms':>8}{'x eager':>9}")
    for name in text_fn:
        samples = sorted(lat[name])
        t50, t95 = statistics.median(samples), samples[int(0.95 * (len(samples) - 1))]
        if name in best:
            ips = args.images / best[name]
            results[name] = ips
            head = f"{ips:>10.2f}{ips / eager_ips:>9.2f}{cosine[name]:>10.6f}"
        else:
            head = f"{'':>10}{'':>9}{'':>10}"
        tail = f"   (built in {built[name]:.1f} s)" if name in built else ""
        print(f"{name:<14}{head}{t50:>10.2f}{t95:>8.2f}{e50 / t50:>9.2f}{tail}")

    if not args.no_auto:
        candidates = [n for n in names if n not in ("onnx-int8",)]
        start = time.perf_counter()
        chosen, trials = select_runtime(model, opts, candidates)
        took = time.perf_counter() - start
        print(f"\nauto picks {chosen.name} in {took:.1f} s: " + ", ".join(
            f"{t.name} {t.seconds * 1000:.0f} ms cos {t.min_cosine:.6f}" for t in trials))
        if chosen.name in results:
            print(f"default runtime ({chosen.name}): {results[chosen.name] / eager_ips:.2f}x "
                  "eager images/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
