"""``clipsearch distill`` (registered by ``clipsearch.training.commands``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _distill(args: argparse.Namespace) -> int:
    from clipsearch.training.augment import AugmentConfig
    from clipsearch.training.distill.config import DistillConfig, Inherit
    from clipsearch.training.distill.data import load_images
    from clipsearch.training.distill.loop import distill

    cfg = DistillConfig(  # ratios and the rest are validated before anything is read
        teacher=args.teacher, out_dir=Path(args.out), width=args.width, depth=args.depth,
        heads=args.heads, inherit=Inherit(args.inherit), epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, patience=args.patience,
        temperature_start=args.temperature_start, temperature_end=args.temperature_end,
        temperature_switch_epoch=args.temperature_switch_epoch, l1_weight=args.l1_weight,
        image_text_weight=args.image_text_weight, image_image_weight=args.image_image_weight,
        seed=args.seed,
        threads=args.threads, device=args.device, progress=not args.no_progress,
        restart=args.restart, augment=AugmentConfig(enabled=not args.no_augment),
        checkpoint_every_s=args.checkpoint_every_s)
    items = load_images(Path(args.source), fmt=args.format, dataset=args.dataset)
    cfg = cfg.model_copy(update={"data_description": f"`{args.source}` (format "
                                                     f"{args.format}): {len(items)} images."})
    result = distill(cfg, items)
    speed = (f"; {result.speed.ratio:.2f}x the teacher's images/s ({result.speed.runtime})"
             if result.speed else "")
    print(f"best epoch {result.best_epoch}: held-out cosine to the teacher "
          f"{result.best_held_out_cosine:.4f} (untrained {result.untrained_held_out_cosine:.4f})"
          f"{speed}; saved to {result.out_dir}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "distill", help="distil a smaller image tower into a teacher's embedding space",
        description="Train a student image tower (width and depth as ratios of the teacher's) "
        "against a frozen teacher: L1 + KL of image-text and image-image similarities, "
        "temperature 4 then 2. The student is saved as a complete CLIP folder (the teacher's "
        "text tower) declaring the teacher's space. A killed run resumes from its checkpoint "
        "(<out>.partial) when started again with the same arguments.")
    p.add_argument("--teacher", required=True, help="teacher model id or folder")
    p.add_argument("--source", required=True, help="dataset (manifest, JSON file or folder)")
    p.add_argument("--out", required=True, help="output model directory")
    p.add_argument("--format", default="auto")
    p.add_argument("--dataset", default=None)
    p.add_argument("--width", type=float, default=0.5, help="student/teacher width, (0, 1]")
    p.add_argument("--depth", type=float, default=0.5, help="student/teacher layers, (0, 1]")
    p.add_argument("--heads", type=int, default=None, help="attention heads (default: keep)")
    p.add_argument("--inherit", choices=["auto", "layers", "none"], default="auto",
                   help="weight inheritance: where shapes allow (auto), required (layers), "
                   "never (none)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--temperature-start", type=float, default=4.0)
    p.add_argument("--temperature-end", type=float, default=2.0)
    p.add_argument("--temperature-switch-epoch", type=int, default=10)
    p.add_argument("--l1-weight", type=float, default=1.0)
    p.add_argument("--image-text-weight", type=float, default=1.0,
                   help="weight of the image-text KL (affinity mimicking)")
    p.add_argument("--image-image-weight", type=float, default=1.0,
                   help="weight of the image-image KL")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every-s", type=float, default=600.0,
                   help="also checkpoint inside an epoch every N seconds (0: every step)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--restart", action="store_true",
                   help="ignore an existing checkpoint and start over")
    p.set_defaults(func=_distill)
