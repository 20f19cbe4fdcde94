"""Distillation benchmark (issue 15): a student's speed and search quality against its teacher.

**Speed** (``--part speed``): a ViT-B/32-shaped teacher (random weights, transformers'
default ``CLIPConfig``, ``save_pretrained``: ``bench/feed_images.build_base_clip``) and the
seed's half-width, half-depth student (384 wide, 6 layers, 12 heads, built by
``clipsearch.training.distill.student``). Images/s of both on the same runtime, interleaved
rounds in one run: the model library's ``auto`` choice for the teacher (``select_runtime``),
then torch fp32. With ``--feed-images N`` also the feeder end to end (``feed_images.feed_rate``,
one process) on N JPEG tiles with each model.

**Quality** (``--part quality``): the demo data (``clipsearch.datasets.scenes``, seed 0, as
``make demo``). ``make demo``'s model (96 wide, 2 layers) stays as it is (``make demo`` must
stay under ~3 minutes); this bench trains its own larger teacher with the same demo trainer
(128 wide, 4 layers; ``--teacher-epochs``), distils the half/half student from it with
``clipsearch.training.distill`` on the train/val splits, and keeps the same student untrained
as the floor. Each model is evaluated by ``clipsearch eval``'s runner on the test split (fresh
embedded index, one caption held out, torch fp32): nDCG@10 per mode and query set, vector-leg
top-10 overlap with the teacher's (exact top 10 over the split's vectors, the teacher's text
vectors: the student's text tower is the teacher's), and the mean cosine between the model's
and the teacher's image vectors of the test images.

    .venv/bin/python bench/distill.py                        # both parts
    .venv/bin/python bench/distill.py --part speed --feed-images 64
    .venv/bin/python bench/distill.py --part quality --distill-epochs 30 --kl-weight 4
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench.feed_images import build_base_clip, cpu_flags, feed_rate, make_image_set
from clipsearch.datasets.scenes import make_demo_dataset
from clipsearch.evaluation.data import load_labelled
from clipsearch.evaluation.encoding import EvalEncoder
from clipsearch.evaluation.queries import CaptionRelevance, caption_queries, category_queries
from clipsearch.evaluation.runner import EvalConfig, ModelReport, run_eval
from clipsearch.models.runtimes.select import (
    RuntimeOptions,
    build_runtime,
    select_runtime,
)
from clipsearch.settings import Settings
from clipsearch.training.demo_model import DemoModelSpec, build_demo_model
from clipsearch.training.distill.config import DistillConfig
from clipsearch.training.distill.data import load_images
from clipsearch.training.distill.loop import distill
from clipsearch.training.distill.save import load_result, write_student_files
from clipsearch.training.distill.speed import paired_rates
from clipsearch.training.distill.student import build_student
from clipsearch.training.distill.teacher import load_teacher

TEACHER_SPEC = {"hidden": 128, "layers": 4}  # make demo's model: 96 wide, 2 layers


# --- speed ------------------------------------------------------------------------------------
def build_pair(work: Path) -> tuple[Path, Path]:
    """The ViT-B/32-shaped teacher and its untrained half/half student, saved as folders."""
    teacher_dir = build_base_clip(work / "vit-b32")
    student_dir = work / "vit-b32-half"
    if not (student_dir / "model.safetensors").is_file():
        teacher = load_teacher(str(teacher_dir))
        student, _ = build_student(teacher.model, DistillConfig(
            teacher=str(teacher_dir), out_dir=student_dir))
        write_student_files(student, teacher, student_dir)
    return teacher_dir, student_dir


def bench_speed(work: Path, *, threads: int, batch: int, rounds: int, feed_images: int) -> None:
    from transformers import CLIPModel

    teacher_dir, student_dir = build_pair(work)
    teacher = CLIPModel.from_pretrained(teacher_dir).eval()
    student = CLIPModel.from_pretrained(student_dir).eval()
    v, s = teacher.config.vision_config, student.config.vision_config
    print(f"[speed] teacher vision {v.hidden_size} wide, {v.num_hidden_layers} layers, "
          f"{v.num_attention_heads} heads; student {s.hidden_size} wide, {s.num_hidden_layers} "
          f"layers, {s.num_attention_heads} heads; batch {batch}, {threads} thread(s), best of "
          f"{rounds} interleaved rounds")
    torch.set_num_threads(threads)
    pixels = np.random.default_rng(0).normal(size=(batch, 3, 224, 224)).astype(np.float32)
    cache = work / "onnx"

    def opts(tag: str) -> RuntimeOptions:
        return RuntimeOptions(threads=threads, model_id=f"bench-distill-{tag}", cache_dir=cache)

    chosen, trials = select_runtime(teacher, opts("teacher"))
    print("[speed] auto picks " + chosen.name + " for the teacher: " + ", ".join(
        f"{t.name} {t.seconds * 1000:.0f} ms" for t in trials))
    names = list(dict.fromkeys([chosen.name, "torch"]))
    print(f"\n{'runtime':<12}{'teacher img/s':>15}{'student img/s':>15}{'student/teacher':>17}")
    for name in names:
        t_rt = chosen if name == chosen.name else build_runtime(name, teacher, opts("teacher"))
        s_rt = build_runtime(name, student, opts("student"))
        t_rate, s_rate = paired_rates(t_rt, s_rt, pixels, rounds)
        print(f"{name:<12}{t_rate:>15.2f}{s_rate:>15.2f}{s_rate / t_rate:>16.2f}x")
    if feed_images:
        manifest = make_image_set(work / "tiles", "tiles", feed_images)
        stamp = time.strftime("%H%M%S")
        rates = {}
        for tag, model in (("teacher", teacher_dir), ("student", student_dir)):
            res = asyncio.run(feed_rate(model, work / "feed-data", manifest, feed_images, 0,
                                        f"{tag}_{stamp}"))
            rates[tag] = res.rate
            print(f"[feed] {tag}: {res.rate:.2f} images/s end to end (runtime {res.runtime}, "
                  f"one process, {feed_images} 224-px JPEG tiles)")
        print(f"[feed] student/teacher: {rates['student'] / rates['teacher']:.2f}x")


# --- quality ----------------------------------------------------------------------------------
def top10_overlap(query: np.ndarray, a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    top_a = np.argsort(-(query @ a.T), axis=1)[:, :k]
    top_b = np.argsort(-(query @ b.T), axis=1)[:, :k]
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(top_a, top_b, strict=True)]))


def ndcg_table(by_model: dict[str, ModelReport], relevance: CaptionRelevance) -> None:
    t_ndcg = {(r.label, qs): m["ndcg@10"] for r in by_model["teacher"].retrieval
              for qs, m in r.metrics.items()}
    print(f"\n[quality] nDCG@10, caption queries judged by {relevance.value} (x teacher)")
    print("| model | mode | category names | held-out captions |")
    print("|---|---|---|---|")
    for name, rep in by_model.items():
        for r in rep.retrieval:
            cells = []
            for qs in ("category", "caption"):
                value = r.metrics.get(qs, {}).get("ndcg@10")
                base = t_ndcg.get((r.label, qs))
                cells.append("-" if value is None else
                             f"{value:.4f} ({value / base:.3f}x)" if base else f"{value:.4f}")
            print(f"| {name} | {r.label} | {cells[0]} | {cells[1]} |")


def bench_quality(work: Path, *, threads: int, teacher_epochs: int, distill_epochs: int,
                  kl_weight: float = 1.0) -> None:
    data = work / "data"
    manifest = data / "manifest.jsonl"
    if not manifest.is_file():
        make_demo_dataset(data, seed=0)
    t0 = time.perf_counter()
    teacher_dir = build_demo_model(work / "teacher", dataset_dir=data, spec=DemoModelSpec(
        **TEACHER_SPEC, epochs=teacher_epochs, threads=threads))
    print(f"[quality] teacher {teacher_dir} ({TEACHER_SPEC}) ready in "
          f"{time.perf_counter() - t0:.0f} s")
    student_dir = work / f"student-{distill_epochs}ep-kl{kl_weight:g}"
    result = load_result(student_dir)
    if result is None:
        cfg = DistillConfig(teacher=str(teacher_dir), out_dir=student_dir, epochs=distill_epochs,
                            temperature_switch_epoch=distill_epochs // 2, threads=threads,
                            image_text_weight=kl_weight, image_image_weight=kl_weight,
                            data_description="the demo dataset (seed 0), train and val splits")
        result = distill(cfg, load_images(manifest))
    print(f"[quality] student: {result.student}; best epoch {result.best_epoch}, held-out "
          f"cosine {result.best_held_out_cosine:.4f} (untrained "
          f"{result.untrained_held_out_cosine:.4f}), {result.seconds:.0f} s")
    floor_dir = work / "floor"
    if not (floor_dir / "model.safetensors").is_file():
        teacher = load_teacher(str(teacher_dir))
        floor, _ = build_student(teacher.model, DistillConfig(teacher=str(teacher_dir),
                                                              out_dir=floor_dir))
        write_student_files(floor, teacher, floor_dir)
    models = {"teacher": str(teacher_dir), "student": str(student_dir),
              "untrained student": str(floor_dir)}
    settings = Settings(data_dir=work / "eval", runtime="torch", torch_threads=threads)
    for relevance in CaptionRelevance:
        report = run_eval(EvalConfig(source=manifest, splits=["test"],
                                     models=list(models.values()), zero_shot=False,
                                     caption_relevance=relevance, work_dir=work / "eval"),
                          settings)
        ndcg_table(dict(zip(models, report.models, strict=True)), relevance)
    # vectors for overlap and cosine, through the same encoder path
    encoders = {name: EvalEncoder.load(path, settings) for name, path in models.items()}
    items = load_labelled(manifest, splits=["test"])
    vecs = {name: enc.images(items).vectors for name, enc in encoders.items()}
    sets = [category_queries(items), caption_queries(items)]
    queries = {qs.name: encoders["teacher"].texts(list(qs.texts.values())) for qs in sets}
    print(f"\n[quality] demo test split: {len(items)} images; queries "
          + ", ".join(f"{qs.name} {len(qs)}" for qs in sets))
    print("\n| model | vector top-10 overlap with the teacher (category / caption) "
          "| mean cosine to the teacher (test images) |")
    print("|---|---|---|")
    for name in models:
        overlaps = " / ".join(f"{top10_overlap(queries[qs.name], vecs[name], vecs['teacher']):.3f}"
                              for qs in sets)
        cosine = float(np.mean(np.sum(vecs[name] * vecs["teacher"], axis=1)))
        print(f"| {name} | {overlaps} | {cosine:.4f} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["speed", "quality", "all"], default="all")
    ap.add_argument("--work", type=Path, default=None,
                    help="where models and data are kept between runs (default: a temp dir)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16, help="images per timed batch")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--feed-images", type=int, default=0,
                    help="feeder end to end on this many tiles per model (0: skip)")
    ap.add_argument("--teacher-epochs", type=int, default=10)
    ap.add_argument("--distill-epochs", type=int, default=60)
    ap.add_argument("--kl-weight", type=float, default=1.0,
                    help="weight of both KL terms (the L1 term keeps 1)")
    args = ap.parse_args(argv)
    print(f"CPU: {cpu_flags()}")
    with tempfile.TemporaryDirectory(prefix="clipsearch-bench-distill-") as tmp:
        work = args.work or Path(tmp)
        if args.part in ("speed", "all"):
            bench_speed(work, threads=args.threads, batch=args.batch, rounds=args.rounds,
                        feed_images=args.feed_images)
        if args.part in ("quality", "all"):
            bench_quality(work, threads=args.threads, teacher_epochs=args.teacher_epochs,
                          distill_epochs=args.distill_epochs, kl_weight=args.kl_weight)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
