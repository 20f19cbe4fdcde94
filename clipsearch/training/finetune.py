"""Contrastive fine-tuning of a CLIP checkpoint on a dataset's train split.

Plain torch: ``CLIPModel`` from any model id or directory, symmetric InfoNCE over a batch of
(augmented image, random caption) pairs scaled by the model's own ``logit_scale`` (clamped at
100 as CLIP does), AdamW with linear warm-up and cosine decay. After every epoch the validation
split is scored (text -> image MRR over the validation images, one query per caption); the best
epoch is saved with ``save_pretrained`` (model, tokenizer, image processor) plus a model card
and ``training_metrics.json``, so the result loads wherever a model id is accepted. Training
stops early after ``patience`` epochs without a better validation MRR.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

from clipsearch.errors import InvalidRequest
from clipsearch.evaluation.data import LabelledImage
from clipsearch.models.preprocess import PreprocessSpec
from clipsearch.models.runtimes.torch_runtime import features
from clipsearch.training.card import write_model_card
from clipsearch.training.config import EpochMetrics, FinetuneConfig, FinetuneResult
from clipsearch.training.optim import adamw, warmup_cosine
from clipsearch.training.output import staged_output
from clipsearch.training.pixels import PixelSet
from clipsearch.training.splits import TEST_SPLITS, VAL_SPLITS, seeded_holdout

log = logging.getLogger(__name__)
MAX_LOGIT_SCALE = math.log(100.0)
# the settings and results live in training/config.py (the model card reads them too); they stay
# importable from here
__all__ = ["EpochMetrics", "FinetuneConfig", "FinetuneResult", "contrastive_loss", "finetune",
           "load_metrics", "split_train_val"]


def _with_captions(items: Sequence[LabelledImage]) -> list[LabelledImage]:
    return [it for it in items if it.captions]


def contrastive_loss(text: torch.Tensor, image: torch.Tensor,
                     logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE: pair i is the positive of row and column i."""
    text = F.normalize(text, dim=-1)
    image = F.normalize(image, dim=-1)
    logits = logit_scale.clamp(max=MAX_LOGIT_SCALE).exp() * text @ image.T
    target = torch.arange(logits.shape[0])
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


class _Trainer:
    def __init__(self, cfg: FinetuneConfig, train: list[LabelledImage],
                 val: list[LabelledImage]) -> None:
        self.cfg = cfg
        self.model = CLIPModel.from_pretrained(cfg.model)
        self.tokenizer = AutoTokenizer.from_pretrained(cfg.model)
        self.processor = AutoImageProcessor.from_pretrained(cfg.model)
        self.spec = PreprocessSpec.from_processor_config(self.processor.to_dict())
        self.train, self.val = train, val
        self.train_px = PixelSet(train, self.spec)
        self.val_px = PixelSet(val, self.spec)
        if not cfg.learn_logit_scale:
            self.model.logit_scale.requires_grad_(False)

    def tokens(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(list(texts), padding=True, truncation=True,
                             max_length=self.cfg.max_caption_tokens, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        return features(self.model.get_text_features(**self.tokens(texts)))

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return features(self.model.get_image_features(pixel_values=pixels))

    @torch.inference_mode()
    def validate(self, batch: int = 128) -> tuple[float, float]:
        """Text -> image MRR and recall@1 over the validation images (every caption a query)."""
        self.model.eval()
        idx = list(range(len(self.val)))
        img = torch.cat([F.normalize(self.image_features(self.val_px.batch(idx[i:i + batch],
                                                                          None, self.cfg.augment)),
                                     dim=-1) for i in range(0, len(idx), batch)])
        queries = [(c, n) for n, it in enumerate(self.val) for c in it.captions]
        ranks: list[np.ndarray] = []
        for i in range(0, len(queries), batch):
            chunk = queries[i:i + batch]
            txt = F.normalize(self.text_features([q for q, _ in chunk]), dim=-1)
            sims = (txt @ img.T).numpy()
            truth = np.array([n for _, n in chunk])
            true_sim = sims[np.arange(len(chunk)), truth]
            ranks.append(np.sum(sims >= true_sim[:, None], axis=1))  # ties count against
        all_ranks = np.concatenate(ranks)
        return float(np.mean(1.0 / all_ranks)), float(np.mean(all_ranks == 1))

    def fit(self, on_epoch: Callable[[EpochMetrics], None] | None = None) -> FinetuneResult:
        cfg = self.cfg
        started = time.perf_counter()
        rng = np.random.default_rng(cfg.seed)
        caption_rng = random.Random(cfg.seed)
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = adamw(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        batch = min(cfg.batch_size, len(self.train))
        steps_per_epoch = max(1, len(self.train) // batch)
        total = steps_per_epoch * cfg.epochs
        warmup = int(total * cfg.warmup_fraction)

        def lr_at(step: int) -> float:
            return warmup_cosine(step, warmup, total)

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
        mrr0, r1_0 = self.validate()
        history = [EpochMetrics(epoch=0, val_mrr=mrr0, val_recall_at_1=r1_0)]
        log.info("epoch 0 (untrained): val MRR %.4f R@1 %.4f", mrr0, r1_0)
        if on_epoch:
            on_epoch(history[0])
        best, best_epoch, stale, stopped = mrr0, 0, 0, False
        with staged_output(cfg.out_dir) as staging:
            self._save(staging)  # the untrained model is the best until an epoch beats it
            for epoch in range(1, cfg.epochs + 1):
                t0 = time.perf_counter()
                self.model.train()
                order = rng.permutation(len(self.train))
                losses = []
                for s in range(steps_per_epoch):
                    idx = [int(i) for i in order[s * batch:(s + 1) * batch]]
                    texts = [caption_rng.choice(self.train[i].captions) for i in idx]
                    pixels = self.train_px.batch(idx, rng, cfg.augment)
                    loss = contrastive_loss(self.text_features(texts),
                                            self.image_features(pixels),
                                            self.model.logit_scale)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, 1.0)
                    opt.step()
                    sched.step()
                    losses.append(float(loss.detach()))
                mrr, r1 = self.validate()
                m = EpochMetrics(epoch=epoch, train_loss=float(np.mean(losses)), val_mrr=mrr,
                                 val_recall_at_1=r1, seconds=time.perf_counter() - t0)
                history.append(m)
                log.info("epoch %d: loss %.4f val MRR %.4f R@1 %.4f (%.1fs)", epoch,
                         m.train_loss, mrr, r1, m.seconds)
                if on_epoch:
                    on_epoch(m)
                if mrr > best:
                    best, best_epoch, stale = mrr, epoch, 0
                    self._save(staging)
                else:
                    stale += 1
                    if stale >= cfg.patience:
                        stopped = epoch < cfg.epochs
                        break
            result = FinetuneResult(
                out_dir=cfg.out_dir, base_model=cfg.model, best_epoch=best_epoch,
                best_val_mrr=best, untrained_val_mrr=mrr0, epochs=history,
                stopped_early=stopped, train_images=len(self.train),
                val_images=len(self.val), seconds=time.perf_counter() - started)
            (staging / "training_metrics.json").write_text(result.model_dump_json(indent=2))
            write_model_card(staging / "README.md", cfg, result)
        return result

    def _save(self, path: Path) -> None:
        for f in path.iterdir():
            if f.is_file():
                f.unlink()
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        self.processor.save_pretrained(path)


def split_train_val(items: Sequence[LabelledImage], *, val_fraction: float = 0.1,
                    seed: int = 0) -> tuple[list[LabelledImage], list[LabelledImage]]:
    """The dataset's own train / val splits; when it has no val split, a seeded holdout."""
    usable = _with_captions(items)
    train = [it for it in usable if it.split == "train"]
    val = [it for it in usable if it.split in VAL_SPLITS]
    if not train:
        train = [it for it in usable if it.split not in (*TEST_SPLITS, *VAL_SPLITS)]
    if not val:
        val, train = seeded_holdout(train, fraction=val_fraction, seed=seed)
    if len(train) < 2 or len(val) < 2:
        raise InvalidRequest(f"too few captioned images to fine-tune: {len(train)} train, "
                             f"{len(val)} validation (need at least 2 of each)")
    return train, val


def finetune(cfg: FinetuneConfig, train: Sequence[LabelledImage], val: Sequence[LabelledImage],
             on_epoch: Callable[[EpochMetrics], None] | None = None) -> FinetuneResult:
    """Fine-tune ``cfg.model`` on ``train``, select on ``val``, save the best to ``out_dir``."""
    train_l, val_l = _with_captions(train), _with_captions(val)
    if len(train_l) < 2 or len(val_l) < 2:
        raise InvalidRequest("fine-tuning needs at least 2 captioned train and val images")
    cfg.out_dir.parent.mkdir(parents=True, exist_ok=True)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            return _Trainer(cfg, train_l, val_l).fit(on_epoch)
    finally:
        torch.set_num_threads(previous_threads)


def load_metrics(model_dir: Path) -> FinetuneResult | None:
    path = Path(model_dir) / "training_metrics.json"
    if not path.is_file():
        return None
    return FinetuneResult.model_validate(json.loads(path.read_text()))
