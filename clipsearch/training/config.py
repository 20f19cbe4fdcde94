"""Fine-tuning's settings and results (plain data): what ``finetune`` takes and returns, and what
the model card and ``training_metrics.json`` record. A module of its own so the trainer and the
model card both import it and neither imports the other."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from clipsearch.training.augment import AugmentConfig


class FinetuneConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="model id or directory to start from")
    out_dir: Path
    epochs: int = Field(10, ge=1, le=1000)
    batch_size: int = Field(64, ge=2, le=4096)
    lr: float = Field(5e-6, gt=0, le=1.0)
    weight_decay: float = Field(0.1, ge=0)
    warmup_fraction: float = Field(0.05, ge=0, lt=1)
    patience: int = Field(3, ge=1, description="epochs without a better val MRR before stopping")
    seed: int = 0
    threads: int = Field(2, ge=1, le=256)
    max_caption_tokens: int = Field(77, ge=4, le=77)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    learn_logit_scale: bool = True
    data_description: str = ""


class EpochMetrics(BaseModel):
    epoch: int
    train_loss: float | None = None
    val_mrr: float
    val_recall_at_1: float
    seconds: float = 0.0


class FinetuneResult(BaseModel):
    out_dir: Path
    base_model: str
    best_epoch: int
    best_val_mrr: float
    untrained_val_mrr: float
    epochs: list[EpochMetrics]
    stopped_early: bool
    train_images: int
    val_images: int
    seconds: float
