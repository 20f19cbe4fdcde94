"""The realistic feeding case for ``bench/feed.py``: a ViT-B/32-shaped CLIP with random weights
(transformers' default ``CLIPConfig``, projection 512, saved with ``save_pretrained``, the real
CLIP tokenizer) and two image sets drawn like the real data: 224 px JPEG tiles (RSICD-like)
and 500-1000 px JPEG figures (ImageCLEF-like).

Measured in one run, interleaved, on the same images:

- feeder end to end (read, decode, preprocess, encode, shard, index, ledger), in worker
  processes (``workers=N``, one thread each) and in one process with N threads (``workers=0``);
- the bare best-runtime loop (decode + preprocess + embed, nothing else) both ways: N processes
  with one thread each, and one process with N threads;
- plain eager fp32 (transformers ``get_image_features``, torch's default threads = the cores).

Every rate counts from the moment the model is loaded (model loading is reported apart).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from bench.feed_memory import (
    Checkpoint,
    NoModel,
    NullIndex,
    RssTracker,
    growth_kib_per_image,
)

CORES = os.cpu_count() or 1
BATCH = 16


# --- the model and the images -----------------------------------------------------------------
def build_base_clip(out_dir: Path, seed: int = 0) -> Path:
    """A ViT-B/32-shaped CLIP with random weights, saved like a hub checkpoint (once)."""
    if (out_dir / "model.safetensors").is_file():
        return out_dir
    import torch
    from transformers import CLIPConfig, CLIPModel
    from transformers.models.clip import CLIPImageProcessorPil

    from clipsearch.models.bpe import build_clip_tokenizer

    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    torch.manual_seed(seed)
    CLIPModel(CLIPConfig(projection_dim=512)).eval().save_pretrained(tmp)
    build_clip_tokenizer().save_pretrained(tmp)
    CLIPImageProcessorPil(size={"shortest_edge": 224},
                          crop_size={"height": 224, "width": 224}).save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return out_dir


def _tile(rng: np.random.Generator) -> Any:
    from PIL import Image

    coarse = rng.integers(0, 255, size=(8, 8, 3), dtype=np.uint8)
    img = Image.fromarray(coarse).resize((224, 224), Image.Resampling.BICUBIC)
    arr = np.asarray(img).astype(np.int16) + rng.integers(-20, 20, size=(224, 224, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _figure(rng: np.random.Generator) -> Any:
    from PIL import Image, ImageDraw

    w, h = (int(x) for x in rng.integers(500, 1001, size=2))
    img = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(10, 40))):
        x0, x1 = sorted(int(v) for v in rng.integers(0, w, 2))
        y0, y1 = sorted(int(v) for v in rng.integers(0, h, 2))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        if rng.random() < 0.5:
            draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(1, 4)))
        else:
            draw.rectangle((x0, y0, x1, y1), outline=colour)
    for _ in range(int(rng.integers(3, 12))):
        draw.text((int(rng.integers(0, w - 60)), int(rng.integers(0, h - 12))),
                  f"Fig. {int(rng.integers(1, 99))}", fill=(0, 0, 0))
    return img


def make_image_set(root: Path, kind: str, n: int, seed: int = 0) -> Path:
    """``n`` JPEGs of ``kind`` (tiles | figures) and a generic manifest; reuses what exists."""
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    draw = _tile if kind == "tiles" else _figure
    rows = []
    for i in range(n):
        name = f"{kind}_{i:06d}.jpg"
        path = images / name
        if not path.is_file():  # image i is the same whatever n is
            draw(np.random.default_rng([seed, i])).save(path, format="JPEG", quality=90)
        rows.append({"id": f"{kind}_{i:06d}", "file": f"images/{name}",
                     "captions": [f"{kind} number {i}"], "dataset": kind, "category": kind,
                     "split": "train"})
    manifest = root / f"manifest-{n}.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def manifest_files(manifest: Path) -> list[str]:
    return [str(manifest.parent / json.loads(line)["file"])
            for line in manifest.read_text().splitlines()]


# --- bare loops in fresh processes ------------------------------------------------------------
@dataclass(frozen=True)
class LoopSpec:
    model: str
    data_dir: str
    runtime: str  # a ClipEncoder runtime name, or "eager" (plain transformers fp32)
    threads: int


def _loop(spec: LoopSpec, files: list[str], barrier: Any, out: Any) -> None:
    """Load, wait for the others, then decode + preprocess + embed ``files`` in batches."""
    import torch

    from clipsearch.models.model import ClipEncoder
    from clipsearch.settings import Settings
    from feeder.prepare import prepare_pixels

    settings = Settings(model=spec.model, data_dir=Path(spec.data_dir))
    if spec.runtime == "eager":
        from transformers import CLIPModel

        from clipsearch.models.loading import load_clip_parts
        from clipsearch.models.runtimes.torch_runtime import features

        torch.set_num_threads(spec.threads)
        parts = load_clip_parts(spec.model)
        model: CLIPModel = parts.model.float().eval()
        prep_spec = parts.spec

        def embed(px: np.ndarray) -> object:
            with torch.no_grad():
                return features(model.get_image_features(pixel_values=torch.from_numpy(px)))
    else:
        enc = ClipEncoder.from_settings(settings, threads=spec.threads, runtime=spec.runtime,
                                        announce=False)
        prep_spec = enc.preprocess_spec
        embed = enc.embed_pixels
    barrier.wait()
    t0 = time.time()
    for i in range(0, len(files), BATCH):
        pixels = [prepare_pixels(f, spec=prep_spec, max_bytes=settings.max_image_bytes,
                                 max_pixels=settings.max_image_pixels).payload
                  for f in files[i:i + BATCH]]
        embed(np.stack(pixels))  # type: ignore[arg-type]
    out.put((t0, time.time(), len(files)))


def bare_rate(spec: LoopSpec, files: list[str], processes: int) -> float:
    """Images/s of ``processes`` copies of the loop, each on its share of ``files``."""
    ctx = get_context("spawn")
    barrier, out = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=_loop, args=(spec, files[i::processes], barrier, out))
             for i in range(processes)]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    start, end = min(r[0] for r in results), max(r[1] for r in results)
    return sum(r[2] for r in results) / (end - start)


# --- the feeder -------------------------------------------------------------------------------
@dataclass
class FeedResult:
    rate: float
    wall_rate: float
    runtime: str
    rss_start: float = 0.0
    rss_end: float = 0.0
    rss_peak: float = 0.0
    checkpoints: list[Checkpoint] = field(default_factory=list)
    traced: list[str] = field(default_factory=list)


async def feed_rate(model: Path | None, data_dir: Path, manifest: Path, n: int, workers: int,
                    tag: str, log_every_s: float = 0.0, auto_int8: bool = False, *,
                    trace_after: int = 0, null_index: bool = False,
                    **request: Any) -> FeedResult:
    """One feed of ``manifest``; ``log_every_s`` > 0: an RSS checkpoint that often (printed);
    ``trace_after`` > 0: tracemalloc growth from that many images to the end; ``request``:
    more ``FeedRequest`` fields; ``model`` None: no model (``NoModel``); ``null_index``: an
    index that keeps nothing (``NullIndex``)."""
    from clipsearch.index import open_index
    from clipsearch.settings import Settings
    from feeder.commands import FeedRequest
    from feeder.encoders import open_encoder
    from feeder.pipeline import feed

    settings = Settings(data_dir=data_dir, table=f"bench_{tag}", auto_int8=auto_int8,
                        **({} if model is None else {"model": str(model)}))
    req = FeedRequest(source=manifest, progress=False, workers=workers,
                      embeddings_dir=data_dir / f"emb-{tag}",
                      dead_letter=data_dir / f"dead-{tag}.jsonl", **request)
    t_open = time.perf_counter()
    encoder = NoModel() if model is None else await open_encoder(settings, req)
    start = getattr(encoder, "start", None)
    if start is not None:  # the CPU encoder loads lazily: load now, so it is timed apart
        await start(manifest_files(manifest)[:32])  # as on the first batch: auto's check images
    index: Any = NullIndex() if null_index else open_index(settings)
    ledger = data_dir / "feeder"

    def indexed() -> int:
        return sum(len(f.read_bytes().splitlines())
                   for f in ledger.glob(f"ledger-*-bench_{tag}-*.jsonl"))

    tracker = RssTracker(indexed, every_s=log_every_s or 1e9, trace_after=trace_after,
                         print_tag=tag if log_every_s else "")
    try:
        await index.ensure_ready()
        tracker.start()
        report = await feed(settings, req, index, encoder)
        end = tracker.stop(report.indexed)
        traced = tracker.traced_growth()
    finally:
        tracker.stop(0)
        await encoder.close()
        await index.close()
    wall = time.perf_counter() - t_open
    assert report.indexed == n and report.consistent, report.summary()
    return FeedResult(rate=n / report.seconds, wall_rate=n / wall, runtime=report.runtime,
                      rss_start=tracker.start_rss, rss_end=end.rss_mib, rss_peak=tracker.peak,
                      checkpoints=[*tracker.points, end], traced=traced)


# --- the benchmark ----------------------------------------------------------------------------
def cpu_flags() -> str:
    """The machine (model, cores, SIMD flags) plus what torch makes of it."""
    import torch

    from clipsearch.machine import describe_machine
    from clipsearch.models.runtimes.torch_runtime import cpu_supports_bf16

    return (f"{describe_machine()}; torch cpu={torch.backends.cpu.get_cpu_capability()} "
            f"native_bf16={cpu_supports_bf16()}")


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (5 min {five:.1f})"


def project(rate: float, n: int = 200_000) -> str:
    minutes = n / rate / 60
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


async def bench_images(tmp: Path, n_images: int, workers: list[int], *,
                       sets: tuple[str, ...] = ("tiles", "figures"), eager_images: int = 48,
                       work_dir: Path | None = None, rounds: int = 1,
                       auto_int8: bool = False) -> None:
    work = work_dir or tmp
    model = build_base_clip(work / "vit-b32")
    print(f"[images] CPU: {cpu_flags()}")
    print(f"[images] ViT-B/32-shaped random CLIP, batch {BATCH}; feeder batch 32; "
          f"workers tried: {workers}; CLIPSEARCH_AUTO_INT8={auto_int8}")
    for kind in sets:
        manifest = make_image_set(work / kind, kind, n_images)
        files = manifest_files(manifest)
        data_dir = work / "feed-data"  # the ONNX export is cached here between runs
        stamp = time.strftime("%H%M%S")
        rates: dict[str, list[float]] = {}
        runtime = "?"
        for r in range(rounds):
            for w in workers:
                res = await feed_rate(model, data_dir, manifest, len(files), w,
                                      f"{kind}{stamp}r{r}w{w}", auto_int8=auto_int8)
                runtime = res.runtime
                rates.setdefault(f"feeder workers={w}", []).append(res.rate)
                rates.setdefault(f"feeder workers={w} incl. start", []).append(res.wall_rate)
                print(f"  [{kind}] feeder workers={w}: {res.rate:.2f} images/s "
                      f"({res.wall_rate:.2f} incl. model load/worker start), runtime "
                      f"{res.runtime}, RSS {res.rss_start:.0f} -> {res.rss_end:.0f} MiB "
                      f"(peak {res.rss_peak:.0f}); {load()}", flush=True)
                if w > 0:
                    spec = LoopSpec(str(model), str(data_dir), res.runtime, 1)
                    rate = bare_rate(spec, files, w)
                    rates.setdefault(f"bare {w} processes x 1 thread", []).append(rate)
                else:
                    spec = LoopSpec(str(model), str(data_dir), res.runtime, CORES)
                    rate = bare_rate(spec, files, 1)
                    rates.setdefault(f"bare 1 process x {CORES} threads", []).append(rate)
                print(f"  [{kind}] bare loop ({'processes' if w else 'threads'}): "
                      f"{rate:.2f} images/s; {load()}", flush=True)
            eager = bare_rate(LoopSpec(str(model), str(data_dir), "eager", CORES),
                              files[:eager_images], 1)
            rates.setdefault(f"plain eager fp32 ({CORES} threads)", []).append(eager)
            print(f"  [{kind}] plain eager fp32: {eager:.2f} images/s; {load()}", flush=True)
        best = {k: max(v) for k, v in rates.items()}
        bare = max(v for k, v in best.items() if k.startswith("bare"))
        eager = best[f"plain eager fp32 ({CORES} threads)"]
        print(f"\n[images:{kind}] {len(files)} images, runtime {runtime}; best of {rounds} "
              "round(s)")
        print(f"  {'contender':<36}{'images/s':>10}{'x eager':>9}{'x bare':>8}  200k images")
        for name, rate in best.items():
            print(f"  {name:<36}{rate:>10.2f}{rate / eager:>9.2f}{rate / bare:>8.2f}  "
                  f"{project(rate)}")
        feeders = [v for k, v in best.items() if k.startswith("feeder") and "incl." not in k]
        top = max(feeders)
        print(f"  targets (no native bf16): feeder >= 2x eager: {top / eager:.2f}x "
              f"{'OK' if top >= 2 * eager else 'MISSED'}; >= 0.85x bare loop: "
              f"{top / bare:.2f}x {'OK' if top >= 0.85 * bare else 'MISSED'}\n", flush=True)


def bench_long(tmp: Path, n_images: int, kind: str, workers: int,
               work_dir: Path | None = None, model_kind: str = "vit-b32", *,
               every_s: float = 15.0, warmup: int = 0, trace_after: int = 0,
               null_index: bool = False) -> None:
    """Item 4: RSS over one long feed: at the start, at checkpoints every ``every_s`` seconds,
    at the end, and the growth per 1,000 images after ``warmup`` images (default: 2,000 or a
    tenth of the feed, whichever is more). ``model_kind="tiny"``: the tests' tiny CLIP, so
    that a long feed measures the pipeline's memory (planner, ledger, writer, shards, decode
    queues) in minutes rather than hours. ``trace_after`` > 0: also the Python allocations
    that grew most from that many images to the end (tracemalloc; slows the feed)."""
    work = work_dir or tmp
    model: Path | None = None  # model_kind "none": the feeder and the index without a model
    if model_kind == "tiny":
        from clipsearch.models.tiny import build_tiny_clip

        model = (work / "tiny-clip" if (work / "tiny-clip" / "config.json").is_file()
                 else build_tiny_clip(work / "tiny-clip"))
    elif model_kind == "vit-b32":
        model = build_base_clip(work / "vit-b32")
    manifest = make_image_set(work / kind, kind, n_images)
    print(f"[long] CPU: {cpu_flags()}")
    data_dir = work / ("feed-data" if model_kind == "vit-b32" else f"feed-data-{model_kind}")
    res = asyncio.run(feed_rate(model, data_dir, manifest, n_images, workers,
                                f"long{time.strftime('%H%M%S')}", log_every_s=every_s,
                                trace_after=trace_after, null_index=null_index))
    warm = warmup or max(2000, n_images // 10)
    during = [cp for cp in res.checkpoints if cp.images < n_images]  # not the final flush
    growth = growth_kib_per_image(during, warm)
    print(f"[long] {n_images} {kind}, {model_kind} model, "
          f"{'null' if null_index else 'embedded'} index, workers={workers}, runtime "
          f"{res.runtime}, {load()}: {res.rate:.2f} images/s; RSS (feeder + workers) start "
          f"{res.rss_start:.0f} MiB, end {res.rss_end:.0f} MiB, peak {res.rss_peak:.0f} MiB")
    marks = [cp for cp in res.checkpoints if cp.images]
    step = max(1, len(marks) // 8)
    shown = marks[::step] + ([marks[-1]] if marks and (len(marks) - 1) % step else [])
    print("[long] RSS at " + ", ".join(f"{cp.images} images {cp.rss_mib:.0f} MiB"
                                       for cp in shown))
    if growth is None:
        print(f"[long] growth after {warm} images: too few checkpoints (use --every-s)")
    else:
        print(f"[long] growth after {warm} images (least squares over "
              f"{sum(cp.images >= warm for cp in during)} checkpoints): "
              f"{growth * 1000 / 1024:.2f} MiB per 1,000 images = {growth:.3f} KiB per image"
              f"; of the feeder's malloc heap in use: "
              f"{growth_kib_per_image(during, warm, lambda p: p.heap_used_mib) or 0:.3f}, "
              f"free but kept: "
              f"{growth_kib_per_image(during, warm, lambda p: p.heap_free_mib) or 0:.3f} KiB "
              "per image")
    for line in res.traced:
        print(f"[long] tracemalloc growth: {line}")
