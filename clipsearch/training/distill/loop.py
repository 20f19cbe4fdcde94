"""The training loop: a frozen teacher, a student image tower, one epoch at a time.

Each step draws a batch of training images, one augmented view each (``training.augment``;
teacher and student see the same view), the batch's texts (``data.text_for``; the teacher's
text embeddings are cached, its text tower is frozen), and takes one AdamW step on the loss
of ``losses.distill_loss`` at the epoch's temperature. After every epoch the held-out
agreement (mean cosine to the teacher on unaugmented held-out images) is measured, the best
epoch's weights kept, a checkpoint written (``checkpoint``), and training stops after
``patience`` epochs without improvement. A tqdm bar shows the loss, the temperature and the
last held-out cosine.
"""

from __future__ import annotations

import logging
import random
import shutil
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
import torch
from tqdm import tqdm
from transformers import CLIPModel

from clipsearch.errors import InvalidRequest
from clipsearch.evaluation.data import LabelledImage
from clipsearch.models.runtimes.torch_runtime import features
from clipsearch.training.distill import checkpoint
from clipsearch.training.distill.config import DistillConfig, DistillResult, EpochRecord
from clipsearch.training.distill.data import NoImages, split_held_out, text_for
from clipsearch.training.distill.losses import (
    LossParts,
    LossWeights,
    distill_loss,
    held_out_agreement,
    logit_scale,
)
from clipsearch.training.distill.save import save_student
from clipsearch.training.distill.speed import measure_speed
from clipsearch.training.distill.student import build_student, tower_shape, trainable
from clipsearch.training.distill.teacher import Teacher, load_teacher
from clipsearch.training.optim import adamw, warmup_cosine
from clipsearch.training.pixels import PixelSet

log = logging.getLogger(__name__)
EVAL_BATCH = 64
SPEED_BATCH = 32

State = dict[str, torch.Tensor]


class _Run:
    def __init__(self, cfg: DistillConfig, teacher: Teacher, train: list[LabelledImage],
                 held: list[LabelledImage]) -> None:
        self.cfg = cfg
        self.teacher = teacher
        self.device = torch.device(cfg.device)
        self.student, self.shape = build_student(teacher.model, cfg)
        self.params = trainable(self.student)
        for module in (self.student, teacher.model):
            torch.nn.Module.to(module, self.device)
        cache = len(train) + len(held) <= cfg.cache_images
        self.train_px = PixelSet(train, teacher.spec, cache=cache, skip_bad=True)
        self.held_px = PixelSet(held, teacher.spec, cache=True, skip_bad=True)
        if len(self.train_px) < 2 or len(self.held_px) < 2:
            raise NoImages(f"too few decodable images: {len(self.train_px)} train and "
                           f"{len(self.held_px)} held-out")
        self.skipped = len(self.train_px.skipped) + len(self.held_px.skipped)
        self.scale = logit_scale(teacher.model.logit_scale)
        self._texts: dict[str, torch.Tensor] = {}
        self.held_teacher = self._held_vectors(teacher.model)

    # --- features -----------------------------------------------------------------------
    def _images(self, model: CLIPModel, pixels: torch.Tensor) -> torch.Tensor:
        return features(model.get_image_features(pixel_values=pixels.to(self.device)))

    @torch.inference_mode()
    def _held_vectors(self, model: CLIPModel) -> torch.Tensor:
        model.eval()
        idx = list(range(len(self.held_px)))
        return torch.cat([self._images(model, self.held_px.batch(idx[i:i + EVAL_BATCH], None,
                                                                  self.cfg.augment))
                          for i in range(0, len(idx), EVAL_BATCH)])

    def agreement(self) -> float:
        return held_out_agreement(self._held_vectors(self.student), self.held_teacher)

    @torch.inference_mode()
    def _encode_texts(self, texts: list[str]) -> None:
        enc = self.teacher.tokenizer(texts, padding=True, truncation=True,
                                     max_length=self.cfg.max_caption_tokens,
                                     return_tensors="pt")
        out = features(self.teacher.model.get_text_features(
            input_ids=enc["input_ids"].to(self.device),
            attention_mask=enc["attention_mask"].to(self.device)))
        for text, vec in zip(texts, out, strict=True):
            self._texts[text] = vec.clone()

    def texts(self, texts: Sequence[str | None]) -> torch.Tensor | None:
        unique = list(dict.fromkeys(t for t in texts if t))
        if len(unique) < 2:
            return None
        missing = [t for t in unique if t not in self._texts]
        if missing:
            self._encode_texts(missing)
        return torch.stack([self._texts[t] for t in unique])

    # --- state --------------------------------------------------------------------------
    def trainable_state(self) -> State:
        return {k: v.detach().to("cpu").clone() for k, v in self.student.state_dict().items()
                if k.startswith(("vision_model.", "visual_projection."))}

    def load_trainable(self, state: State) -> None:
        unexpected = self.student.load_state_dict(state, strict=False).unexpected_keys
        if unexpected:  # a checkpoint of another architecture slipped past the recipe check
            raise checkpoint.CheckpointMismatch(f"unexpected weights {unexpected[:3]}")

    # --- training -----------------------------------------------------------------------
    def _step(self, opt: torch.optim.Optimizer, idx: list[int], rng: np.random.Generator,
              caption_rng: random.Random, temperature: float,
              weights: LossWeights) -> LossParts:
        """One optimizer step on images ``idx`` (one augmented view each, shared by both)."""
        texts = self.texts([text_for(self.train_px.items[i], caption_rng) for i in idx])
        pixels = self.train_px.batch(idx, rng, self.cfg.augment)
        with torch.no_grad():
            target = self._images(self.teacher.model, pixels)
        parts = distill_loss(self._images(self.student, pixels), target, texts,
                             scale=self.scale, temperature=temperature, weights=weights)
        opt.zero_grad(set_to_none=True)
        parts.total.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        opt.step()
        return parts

    def fit(self, on_epoch: Callable[[EpochRecord], None] | None) -> DistillResult:
        cfg = self.cfg
        started = time.perf_counter()
        opt = adamw(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        batch = min(cfg.batch_size, len(self.train_px))
        steps_per_epoch = max(1, len(self.train_px) // batch)
        total = steps_per_epoch * cfg.epochs
        warmup = int(total * cfg.warmup_fraction)

        def lr_at(step: int) -> float:
            return cfg.lr * warmup_cosine(step, warmup, total)

        folder = checkpoint.checkpoint_dir(cfg.out_dir)
        recipe = cfg.recipe()
        data = checkpoint.data_signature(self.train_px.items, self.held_px.items)
        rng = np.random.default_rng(cfg.seed)
        caption_rng = random.Random(cfg.seed)
        loaded = None if cfg.restart else checkpoint.load(folder, recipe=recipe, data=data)
        if loaded is not None:
            state = loaded.state
            self.load_trainable(loaded.student)
            best = loaded.best
            opt.load_state_dict(loaded.optimizer)
            torch.set_rng_state(loaded.torch_rng)
            if state.numpy_rng is not None:
                rng.bit_generator.state = state.numpy_rng
            if state.python_rng is not None:
                caption_rng.setstate(cast(tuple[Any, ...], _as_tuple(state.python_rng)))
            resumed: int | None = state.epoch
            log.info("resuming from the checkpoint in %s after epoch %d (+%d steps)", folder,
                     state.epoch, state.epoch_step)
        else:
            state = checkpoint.RunState()
            cosine0 = self.agreement()
            state.history.append(EpochRecord(epoch=0, held_out_cosine=cosine0))
            state.best_cosine, best = cosine0, self.trainable_state()
            resumed = None
            log.info("epoch 0 (untrained student): held-out cosine %.4f", cosine0)
            if on_epoch:
                on_epoch(state.history[0])
        weights = LossWeights(l1=cfg.l1_weight, image_text=cfg.image_text_weight,
                              image_image=cfg.image_image_weight)
        stopped = state.stale >= cfg.patience and state.epoch < cfg.epochs
        bar = tqdm(total=total, initial=state.step, disable=not cfg.progress, unit="step",
                   desc="distill", dynamic_ncols=True)
        last_save = time.monotonic()

        def save_inside(order: np.ndarray, done: int, sums: np.ndarray) -> None:
            """A checkpoint after ``done`` steps of the current epoch."""
            state.epoch_order, state.epoch_step = order.tolist(), done
            state.epoch_sums = sums.tolist()
            state.numpy_rng = dict(rng.bit_generator.state)
            state.python_rng = list(caption_rng.getstate())
            checkpoint.save(folder, recipe=recipe, data=data, state=state,
                            student=self.trainable_state(), best=best,
                            optimizer=opt.state_dict())

        try:
            for epoch in range(state.epoch + 1, cfg.epochs + 1):
                if stopped:
                    break
                t0 = time.perf_counter()
                temperature = cfg.temperature(epoch)
                self.student.train()
                if state.epoch_order is not None:  # resume inside this epoch
                    order = np.asarray(state.epoch_order)
                    first, sums = state.epoch_step, np.asarray(state.epoch_sums or [0.0] * 4)
                else:
                    order, first, sums = rng.permutation(len(self.train_px)), 0, np.zeros(4)
                for s in range(first, steps_per_epoch):
                    for group in opt.param_groups:
                        group["lr"] = lr_at(state.step)
                    idx = [int(i) for i in order[s * batch:(s + 1) * batch]]
                    parts = self._step(opt, idx, rng, caption_rng, temperature, weights)
                    state.step += 1
                    sums += (float(parts.total.detach()), parts.l1, parts.kl_image_text,
                             parts.kl_image_image)
                    bar.update(1)
                    bar.set_postfix(epoch=epoch, T=f"{temperature:g}",
                                    loss=f"{float(parts.total.detach()):.4f}",
                                    held_out_cos=f"{state.history[-1].held_out_cosine:.4f}")
                    if (s + 1 < steps_per_epoch
                            and time.monotonic() - last_save >= cfg.checkpoint_every_s):
                        save_inside(order, s + 1, sums)
                        last_save = time.monotonic()
                cosine = self.agreement()
                means = sums / steps_per_epoch
                record = EpochRecord(epoch=epoch, temperature=temperature,
                                     train_loss=means[0], l1=means[1], kl_image_text=means[2],
                                     kl_image_image=means[3], held_out_cosine=cosine,
                                     seconds=time.perf_counter() - t0)
                state.history.append(record)
                bar.set_postfix(epoch=epoch, T=f"{temperature:g}", loss=f"{means[0]:.4f}",
                                held_out_cos=f"{cosine:.4f}")
                log.info("epoch %d (T=%g): loss %.4f held-out cosine %.4f (%.1f s)", epoch,
                         temperature, record.train_loss, cosine, record.seconds)
                if cosine > state.best_cosine + cfg.min_delta:
                    state.best_cosine, state.best_epoch, state.stale = cosine, epoch, 0
                    best = self.trainable_state()
                else:
                    state.stale += 1
                state.epoch = epoch
                state.epoch_order, state.epoch_step, state.epoch_sums = None, 0, None
                state.numpy_rng = dict(rng.bit_generator.state)
                state.python_rng = list(caption_rng.getstate())
                checkpoint.save(folder, recipe=recipe, data=data, state=state,
                                student=self.trainable_state(), best=best,
                                optimizer=opt.state_dict())
                last_save = time.monotonic()
                if on_epoch:
                    on_epoch(record)
                stopped = state.stale >= cfg.patience and epoch < cfg.epochs
        finally:
            bar.close()
        self.load_trainable(best)
        self.student.eval()
        idx = list(range(min(SPEED_BATCH, len(self.held_px))))
        speed = measure_speed(self.teacher.model, self.student,
                              self.held_px.batch(idx, None, cfg.augment).numpy(),
                              device=cfg.device, threads=cfg.threads)
        result = DistillResult(
            out_dir=cfg.out_dir, teacher=self.teacher.name, teacher_space=self.teacher.space,
            student=self.shape, teacher_shape=tower_shape(self.teacher.model.config),
            best_epoch=state.best_epoch, best_held_out_cosine=state.best_cosine,
            untrained_held_out_cosine=state.history[0].held_out_cosine,
            epochs=state.history, stopped_early=stopped, resumed_from_epoch=resumed,
            train_images=len(self.train_px), held_out_images=len(self.held_px),
            skipped_images=self.skipped, speed=speed, seconds=time.perf_counter() - started)
        save_student(self.student, self.teacher, cfg, result)
        shutil.rmtree(folder, ignore_errors=True)
        return result


def _as_tuple(value: object) -> object:
    """JSON turned the Python RNG state's tuples into lists; ``setstate`` wants tuples."""
    if isinstance(value, list):
        return tuple(_as_tuple(v) for v in value)
    return value


def distill(cfg: DistillConfig, items: Sequence[LabelledImage],
            on_epoch: Callable[[EpochRecord], None] | None = None) -> DistillResult:
    """Distil ``cfg.teacher``'s image tower on ``items``; the student goes to ``out_dir``."""
    if not items:
        raise NoImages("no images to distil on")
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidRequest(f"--device {cfg.device}: no CUDA device is available here")
    train, held = split_held_out(items, val_fraction=cfg.val_fraction, seed=cfg.seed,
                                 max_held_out=cfg.max_held_out)
    teacher = load_teacher(cfg.teacher)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            return _Run(cfg, teacher, train, held).fit(on_epoch)
    finally:
        torch.set_num_threads(previous_threads)
