"""Distillation's settings and results (plain data, pydantic): what ``distill`` takes and
returns, what the checkpoint, the model card and ``distill_metrics.json`` record."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from clipsearch.training.augment import AugmentConfig

# what may change between a run and its resumption without invalidating the checkpoint
RUNTIME_ONLY = frozenset({"threads", "device", "progress", "out_dir", "restart",
                          "checkpoint_every_s"})


class Inherit(StrEnum):
    auto = "auto"  # inherit the teacher's weights when the shapes allow, else start at random
    layers = "layers"  # inherit (embeddings, every k-th layer, projection) or refuse
    none = "none"  # random initialisation


class DistillConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    teacher: str = Field(description="the teacher's model id or folder (frozen)")
    out_dir: Path
    width: float = Field(0.5, gt=0, le=1, description="student width / teacher width")
    depth: float = Field(0.5, gt=0, le=1, description="student layers / teacher layers")
    heads: int | None = Field(None, ge=1, le=256,
                              description="attention heads (None: the teacher's)")
    inherit: Inherit = Inherit.auto
    epochs: int = Field(20, ge=1, le=10_000)
    batch_size: int = Field(64, ge=2, le=4096)
    lr: float = Field(5e-4, gt=0, le=1.0)
    weight_decay: float = Field(0.05, ge=0)
    warmup_fraction: float = Field(0.05, ge=0, lt=1)
    temperature_start: float = Field(4.0, gt=0, description="seed: 4 for the first epochs")
    temperature_end: float = Field(2.0, gt=0, description="seed: 2 after")
    temperature_switch_epoch: int = Field(10, ge=0, description="first epoch at the end value "
                                          "minus one (seed: ten epochs at 4)")
    l1_weight: float = Field(1.0, ge=0)
    image_text_weight: float = Field(1.0, ge=0, description="KL over the batch's texts")
    image_image_weight: float = Field(1.0, ge=0, description="KL over the batch's images")
    patience: int = Field(3, ge=1, description="epochs without better held-out agreement")
    min_delta: float = Field(1e-4, ge=0)
    val_fraction: float = Field(0.1, gt=0, lt=1, description="held-out share when the data "
                                "has no val split")
    max_held_out: int = Field(512, ge=2, description="held-out images scored per epoch")
    cache_images: int = Field(20_000, ge=0, description="keep decoded images in memory up to "
                              "this many (more: decoded per batch)")
    max_caption_tokens: int = Field(77, ge=4, le=77)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    seed: int = 0
    threads: int = Field(2, ge=1, le=256)
    device: str = "cpu"
    progress: bool = True
    restart: bool = Field(False, description="ignore (and replace) an existing checkpoint")
    checkpoint_every_s: float = Field(600.0, ge=0, description="also checkpoint inside an "
                                      "epoch every N seconds, so a killed run on a large set "
                                      "loses minutes, not an epoch (0: after every step)")
    data_description: str = ""

    def temperature(self, epoch: int) -> float:
        """The temperature of (1-based) ``epoch``: the start value up to the switch."""
        return self.temperature_start if epoch <= self.temperature_switch_epoch \
            else self.temperature_end

    def recipe(self) -> dict[str, object]:
        """The settings that define the result (a checkpoint resumes only under the same)."""
        return self.model_dump(mode="json", exclude=set(RUNTIME_ONLY) | {"data_description"})


class TowerShape(BaseModel):
    model_config = ConfigDict(frozen=True)

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    inherited_layers: list[int] | None = Field(
        None, description="teacher layer of each student layer (None: random initialisation)")


class EpochRecord(BaseModel):
    epoch: int
    temperature: float | None = None
    train_loss: float | None = None
    l1: float | None = None
    kl_image_text: float | None = None
    kl_image_image: float | None = None
    held_out_cosine: float
    seconds: float = 0.0


class Speed(BaseModel):
    runtime: str
    batch: int
    teacher_images_per_s: float
    student_images_per_s: float

    @property
    def ratio(self) -> float:
        return self.student_images_per_s / self.teacher_images_per_s


class DistillResult(BaseModel):
    out_dir: Path
    teacher: str
    teacher_space: str
    student: TowerShape
    teacher_shape: TowerShape
    best_epoch: int
    best_held_out_cosine: float
    untrained_held_out_cosine: float
    epochs: list[EpochRecord]
    stopped_early: bool
    resumed_from_epoch: int | None = None
    train_images: int
    held_out_images: int
    skipped_images: int
    speed: Speed | None = None
    seconds: float
