"""The model card written next to a fine-tuned checkpoint: data, settings, metrics."""

from __future__ import annotations

from pathlib import Path

from clipsearch.training.config import FinetuneConfig, FinetuneResult


def front_matter(base_model: str, tags: list[str]) -> str:
    """The Hugging Face model card header (YAML) every clipsearch-trained model carries."""
    return f"""---
library_name: transformers
pipeline_tag: zero-shot-image-classification
base_model: {base_model}
tags: [{", ".join(tags)}]
---
"""


def settings_table(settings: dict[str, object]) -> str:
    rows = "\n".join(f"| `{k}` | `{v}` |" for k, v in settings.items())
    return f"| setting | value |\n|---|---|\n{rows}"


def render_model_card(cfg: FinetuneConfig, result: FinetuneResult) -> str:
    settings = cfg.model_dump(mode="json", exclude={"out_dir", "data_description"})
    rows = "\n".join(
        f"| {m.epoch} | {'' if m.train_loss is None else f'{m.train_loss:.4f}'} "
        f"| {m.val_mrr:.4f} | {m.val_recall_at_1:.4f} | {m.seconds:.1f} |"
        for m in result.epochs)
    return f"""{front_matter(cfg.model, ["clip", "clipsearch", "contrastive-finetuning"])}
# CLIP fine-tuned with `clipsearch finetune`

Base model: `{cfg.model}`. Load it like any CLIP checkpoint:
`CLIPModel.from_pretrained("<this directory>")`, or set `CLIPSEARCH_MODEL=<this directory>`.

## Data

{cfg.data_description or "(not described)"}

Train images: {result.train_images}; validation images: {result.val_images}.

## Training

Symmetric InfoNCE (image -> text and text -> image cross-entropy over the batch) scaled by the
model's logit scale, AdamW with warm-up and cosine decay, augmentation: random resized crop,
flips, 90-degree turns, colour jitter. Best epoch by validation MRR (text -> image, each
validation caption a query over all validation images); early stopping after `patience`
epochs without improvement.

{settings_table(settings)}

## Metrics

Best epoch: **{result.best_epoch}** (validation MRR **{result.best_val_mrr:.4f}**;
untrained: {result.untrained_val_mrr:.4f}). Stopped early: {result.stopped_early}.
Training time: {result.seconds:.0f} s.

| epoch | train loss | val MRR | val R@1 | seconds |
|---|---|---|---|---|
{rows}
"""


def write_model_card(path: Path, cfg: FinetuneConfig, result: FinetuneResult) -> None:
    path.write_text(render_model_card(cfg, result))
