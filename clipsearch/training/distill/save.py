"""The student as a complete CLIP folder: the student image tower with the teacher's text
tower, projections, tokenizer and image processor (``save_pretrained``, so it loads wherever
a model id is accepted), ``distill_metrics.json``, a model card, and ``clipsearch_space.json``
declaring that it embeds into the teacher's space (``clipsearch.models.identity``). Written to
a staging folder beside ``out_dir`` and renamed into place, so ``out_dir`` is never half
written.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import CLIPModel

from clipsearch.models.identity import short_space, write_declaration
from clipsearch.training.card import front_matter, settings_table
from clipsearch.training.distill.config import DistillConfig, DistillResult, TowerShape
from clipsearch.training.distill.teacher import Teacher
from clipsearch.training.output import staged_output

METRICS_FILE = "distill_metrics.json"


def _shape(s: TowerShape) -> str:
    return (f"width {s.hidden_size}, MLP {s.intermediate_size}, {s.num_hidden_layers} layers, "
            f"{s.num_attention_heads} heads")


def render_card(cfg: DistillConfig, result: DistillResult) -> str:
    rows = "\n".join(
        f"| {e.epoch} | {'' if e.temperature is None else f'{e.temperature:g}'} "
        f"| {'' if e.train_loss is None else f'{e.train_loss:.4f}'} "
        f"| {e.held_out_cosine:.4f} | {e.seconds:.1f} |" for e in result.epochs)
    inherited = (f"inherited from teacher layers {result.student.inherited_layers}"
                 if result.student.inherited_layers else "random initialisation")
    speed = (f"{result.speed.student_images_per_s:.1f} images/s vs the teacher's "
             f"{result.speed.teacher_images_per_s:.1f} (**{result.speed.ratio:.2f}x**), runtime "
             f"`{result.speed.runtime}`, batch {result.speed.batch}, on the machine that "
             "trained it" if result.speed else "not measured")
    return f"""{front_matter(cfg.teacher, ["clip", "clipsearch", "distillation"])}
# CLIP image tower distilled with `clipsearch distill`

Teacher: `{cfg.teacher}` (space `{short_space(result.teacher_space)}`). This folder embeds
**into the teacher's space** (`clipsearch_space.json`): its image vectors may be compared
with the teacher's, and its text tower and projections are the teacher's, unchanged. Load it
like any CLIP checkpoint: `CLIPModel.from_pretrained("<this directory>")`, or
`CLIPSEARCH_MODEL=<this directory>`.

## Student

Image tower: {_shape(result.student)} ({inherited}); the teacher's: {_shape(result.teacher_shape)}.

## Data

{cfg.data_description or "(not described)"}

Train images: {result.train_images}; held-out images: {result.held_out_images}; skipped
(undecodable): {result.skipped_images}.

## Recipe

The teacher is frozen. Loss = L1 between unit image embeddings + KL divergence between the
teacher's and the student's similarity distributions over the batch's texts (image->text and
text->image, TinyCLIP's affinity mimicking; captions, else category prompts) and over the
batch's images, at temperature {cfg.temperature_start:g} for the first
{cfg.temperature_switch_epoch} epochs and {cfg.temperature_end:g} after (the PicCollage recipe),
AdamW with warm-up and cosine decay, augmentation (random resized crop, flips, 90-degree turns,
colour jitter; teacher and student see the same view). Best epoch by held-out agreement (mean
cosine between the student's and the teacher's embeddings of held-out images); early stopping
after `patience` epochs without improvement.

{settings_table(cfg.recipe())}

## Metrics

Best epoch **{result.best_epoch}**: held-out cosine to the teacher
**{result.best_held_out_cosine:.4f}** (untrained student: {result.untrained_held_out_cosine:.4f}).
Stopped early: {result.stopped_early}. Resumed from epoch: {result.resumed_from_epoch}.
Training time: {result.seconds:.0f} s.

Speed: {speed}.

| epoch | temperature | loss | held-out cosine | seconds |
|---|---|---|---|---|
{rows}
"""


def write_student_files(student: CLIPModel, teacher: Teacher, folder: Path) -> None:
    """The loadable part: weights, the teacher's tokenizer and processor, the declaration
    (also used for an untrained student, the benchmarks' floor)."""
    module: torch.nn.Module = student  # PreTrainedModel.to's stub is too narrow
    module.to("cpu")
    student.save_pretrained(folder)
    teacher.tokenizer.save_pretrained(folder)
    teacher.processor.save_pretrained(folder)
    write_declaration(folder, teacher.space, teacher=teacher.name)


def save_student(student: CLIPModel, teacher: Teacher, cfg: DistillConfig,
                 result: DistillResult) -> Path:
    with staged_output(cfg.out_dir) as staging:
        write_student_files(student, teacher, staging)
        (staging / METRICS_FILE).write_text(result.model_dump_json(indent=2))
        (staging / "README.md").write_text(render_card(cfg, result))
    return cfg.out_dir


def load_result(folder: Path) -> DistillResult | None:
    path = Path(folder) / METRICS_FILE
    if not path.is_file():
        return None
    return DistillResult.model_validate(json.loads(path.read_text()))
