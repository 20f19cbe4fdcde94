"""``clipsearch finetune``, ``clipsearch demo-model`` and ``clipsearch distill``."""

from __future__ import annotations

import argparse
from pathlib import Path


def _finetune(args: argparse.Namespace) -> int:
    from clipsearch.evaluation.data import load_labelled
    from clipsearch.training.augment import AugmentConfig
    from clipsearch.training.finetune import FinetuneConfig, finetune, split_train_val

    items = load_labelled(Path(args.source), fmt=args.format, dataset=args.dataset)
    train, val = split_train_val(items, val_fraction=args.val_fraction, seed=args.seed)
    cfg = FinetuneConfig(
        model=args.model, out_dir=Path(args.out), epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        patience=args.patience, seed=args.seed, threads=args.threads,
        augment=AugmentConfig(enabled=not args.no_augment),
        data_description=f"`{args.source}` (format {args.format}): {len(train)} train and "
                         f"{len(val)} validation images.")
    result = finetune(cfg, train, val)
    print(f"best epoch {result.best_epoch}: val MRR {result.best_val_mrr:.4f} "
          f"(untrained {result.untrained_val_mrr:.4f}); saved to {result.out_dir}")
    return 0


def _demo_model(args: argparse.Namespace) -> int:
    from clipsearch.training.demo_model import DemoModelSpec, init_random_clip, train_demo_model

    spec = DemoModelSpec(seed=args.seed, epochs=args.epochs, threads=args.threads)
    out = Path(args.out)
    if args.init_only:
        init_random_clip(out, spec)
        print(f"untrained demo model (random weights, demo architecture) in {out}")
        return 0
    data = Path(args.data) if args.data else out.parent / f"{out.name}-data"
    result = train_demo_model(out, dataset_dir=data, spec=spec)
    print(f"demo model in {out}: val MRR {result.best_val_mrr:.4f} "
          f"(untrained {result.untrained_val_mrr:.4f}), best epoch {result.best_epoch}, "
          f"{result.seconds:.0f} s; training data in {data}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("finetune", help="contrastive fine-tuning of a CLIP checkpoint",
                       description="Fine-tune a CLIP model on a dataset's train split "
                       "(validation: its val split, else a seeded holdout); the best epoch is "
                       "saved with save_pretrained plus a model card.")
    p.add_argument("--model", required=True, help="model id or directory to start from")
    p.add_argument("--source", required=True, help="dataset (manifest, JSON file or folder)")
    p.add_argument("--format", default="auto")
    p.add_argument("--dataset", default=None)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-6)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-augment", action="store_true")
    p.set_defaults(func=_finetune)

    p = sub.add_parser("demo-model", help="train the demo CLIP from scratch, reproducibly",
                       description="Draw the demo dataset and train a small CLIP on it from "
                       "scratch (a few minutes on 2 cores).")
    p.add_argument("--out", required=True, help="output model directory")
    p.add_argument("--data", default=None, help="training data folder (default: <out>-data)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: fastest on a busy machine; results are reproducible "
                   "for a given thread count)")
    p.add_argument("--init-only", action="store_true",
                   help="write the untrained (random-weight) demo model, for comparisons")
    p.set_defaults(func=_demo_model)

    from clipsearch.training.distill.commands import register as register_distill

    register_distill(sub)
