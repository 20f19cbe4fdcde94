"""The demo model: a small CLIP trained from scratch on the demo dataset, reproducibly.

``build_demo_model(out)`` draws the demo dataset (``clipsearch.datasets.scenes``, seed 0), builds a
small random-weight CLIP with the real CLIP tokenizer (64-px images, 8-px patches, 512-d
embeddings like ``openai/clip-vit-base-patch32`` so the default index settings fit), and
trains it with the same ``finetune`` code users run. Same arguments, same machine type: same
weights (a fixed seed, fixed thread count and data order).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field
from transformers import CLIPModel
from transformers.models.clip import CLIPImageProcessorPil

from clipsearch.datasets.scenes import make_demo_dataset
from clipsearch.evaluation.data import load_labelled
from clipsearch.models.bpe import build_clip_tokenizer
from clipsearch.models.tiny import is_complete, tiny_clip_config
from clipsearch.training.augment import AugmentConfig
from clipsearch.training.finetune import FinetuneConfig, FinetuneResult, finetune, split_train_val

log = logging.getLogger(__name__)


class DemoModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    n_per_category: int = Field(300, ge=4)
    image_size: int = Field(64, ge=16)
    patch_size: int = Field(8, ge=2)
    hidden: int = Field(96, ge=16)
    layers: int = Field(2, ge=1)
    projection_dim: int = Field(512, ge=2)
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(64, ge=2)
    lr: float = 1e-3
    patience: int = Field(4, ge=1)
    threads: int = Field(1, ge=1)


def init_random_clip(out_dir: Path, spec: DemoModelSpec) -> Path:
    """A random-weight CLIP of the demo size, saved like any checkpoint."""
    config = tiny_clip_config(projection_dim=spec.projection_dim, image_size=spec.image_size,
                              patch_size=spec.patch_size, hidden=spec.hidden, layers=spec.layers)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = CLIPModel(config)
    model.save_pretrained(out_dir)
    build_clip_tokenizer().save_pretrained(out_dir)
    CLIPImageProcessorPil(size={"shortest_edge": spec.image_size},
                          crop_size={"height": spec.image_size, "width": spec.image_size},
                          ).save_pretrained(out_dir)
    return out_dir


def train_demo_model(out: Path, *, dataset_dir: Path,
                     spec: DemoModelSpec | None = None) -> FinetuneResult:
    """Generate the data (if missing), initialise and train; the result is saved to ``out``."""
    spec = spec or DemoModelSpec()
    manifest = dataset_dir / "manifest.jsonl"
    if not manifest.is_file():
        make_demo_dataset(dataset_dir, n_per_category=spec.n_per_category, seed=spec.seed)
    train, val = split_train_val(load_labelled(manifest), seed=spec.seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    init_dir = Path(tempfile.mkdtemp(prefix=".demo-init-", dir=out.parent))
    try:
        init_random_clip(init_dir, spec)
        cfg = FinetuneConfig(
            model=str(init_dir), out_dir=out, epochs=spec.epochs, batch_size=spec.batch_size,
            lr=spec.lr, weight_decay=0.05, warmup_fraction=0.05, patience=spec.patience,
            seed=spec.seed, threads=spec.threads,
            augment=AugmentConfig(scale=(0.6, 1.0)),
            data_description=(
                f"The clipsearch demo dataset (`clipsearch.datasets.scenes`, seed {spec.seed}, "
                f"{spec.n_per_category} scenes per category), trained from scratch "
                f"(random init: {spec.model_dump_json()})."),
        )
        result = finetune(cfg, train, val)
    finally:
        shutil.rmtree(init_dir, ignore_errors=True)
    return result


def build_demo_model(out: Path, *, dataset_dir: Path,
                     spec: DemoModelSpec | None = None) -> Path:
    """The demo model in ``out``: built on first call, reused when already complete."""
    out = Path(out)
    if is_complete(out):
        return out
    result = train_demo_model(out, dataset_dir=Path(dataset_dir), spec=spec)
    log.info("demo model: val MRR %.3f (untrained %.3f), best epoch %d, %.0f s",
             result.best_val_mrr, result.untrained_val_mrr, result.best_epoch, result.seconds)
    return out
