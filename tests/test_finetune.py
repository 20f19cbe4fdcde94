"""Fine-tuning on a tiny set: the loss falls, validation MRR beats the untrained model, and the
saved checkpoint (with its model card) loads through the encoder like any model id."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipsearch.datasets.scenes import make_demo_dataset
from clipsearch.errors import InvalidRequest
from clipsearch.evaluation.data import LabelledImage, load_labelled
from clipsearch.models.model import ClipEncoder
from clipsearch.training.augment import AugmentConfig, augment
from clipsearch.training.demo_model import DemoModelSpec, init_random_clip
from clipsearch.training.finetune import (
    FinetuneConfig,
    FinetuneResult,
    contrastive_loss,
    finetune,
    load_metrics,
    split_train_val,
)

SPEC = DemoModelSpec(image_size=32, patch_size=8, hidden=32, layers=1, projection_dim=32)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[FinetuneResult, Path]:
    root = tmp_path_factory.mktemp("ft")
    data = make_demo_dataset(root / "data", n_per_category=14, image_size=32,
                             categories=["water", "forest", "airport", "desert"],
                             hard_fraction=0.0, val_fraction=0.25, test_fraction=0.0)
    train, val = split_train_val(load_labelled(data.manifest))
    init = init_random_clip(root / "init", SPEC)
    cfg = FinetuneConfig(model=str(init), out_dir=root / "out", epochs=6, batch_size=16,
                         lr=2e-3, weight_decay=0.0, patience=6, threads=1,
                         data_description="tiny demo subset")
    return finetune(cfg, train, val), root / "out"


def test_loss_falls_and_validation_mrr_beats_untrained(
        tiny_run: tuple[FinetuneResult, Path]) -> None:
    result, _ = tiny_run
    losses = [e.train_loss for e in result.epochs if e.train_loss is not None]
    assert losses[-1] < losses[0]
    assert result.best_val_mrr > result.untrained_val_mrr + 0.05
    assert result.best_epoch >= 1
    assert result.epochs[0].val_mrr == result.untrained_val_mrr


def test_best_checkpoint_loads_like_any_model_id(tiny_run: tuple[FinetuneResult, Path]) -> None:
    result, out = tiny_run
    for name in ("config.json", "model.safetensors", "tokenizer.json",
                 "preprocessor_config.json", "README.md", "training_metrics.json"):
        assert (out / name).is_file(), name
    card = (out / "README.md").read_text()
    assert "tiny demo subset" in card and f"{result.best_val_mrr:.4f}" in card
    assert load_metrics(out) == result
    enc = ClipEncoder.load(str(out))
    vec = enc.embed_texts(["a lake seen from above"]).vectors
    assert vec.shape == (1, 32) and np.isclose(np.linalg.norm(vec), 1.0, atol=1e-5)
    assert json.loads((out / "config.json").read_text())["projection_dim"] == 32
    assert not list(out.parent.glob(".out.tmp-*"))  # staging directories are cleaned up


def test_contrastive_loss_is_symmetric_and_low_for_matching_pairs() -> None:
    x = torch.nn.functional.normalize(torch.randn(8, 16), dim=-1)
    scale = torch.tensor(np.log(100.0), dtype=torch.float32)
    matched = contrastive_loss(x, x, scale)
    shuffled = contrastive_loss(x, x.roll(1, dims=0), scale)
    assert matched < 0.1 < shuffled
    y = torch.randn(8, 16)
    assert contrastive_loss(x, y, scale) == pytest.approx(float(contrastive_loss(y, x, scale)))


def test_augment_is_seeded_and_sized() -> None:
    img = Image.linear_gradient("L").convert("RGB").resize((80, 60))
    cfg = AugmentConfig()
    a = augment(img, np.random.default_rng(3), cfg, (32, 40))
    b = augment(img, np.random.default_rng(3), cfg, (32, 40))
    c = augment(img, np.random.default_rng(4), cfg, (32, 40))
    assert a.size in ((40, 32), (32, 40))  # a 90-degree turn swaps the sides
    assert a.tobytes() == b.tobytes() and a.tobytes() != c.tobytes()
    assert augment(img, np.random.default_rng(0), AugmentConfig(enabled=False),
                   (32, 32)).size == (80, 60)


def test_too_little_data_is_refused(tmp_path: Path) -> None:
    one = [LabelledImage(id="a", path=tmp_path / "a.png", captions=["x"], split="train")]
    with pytest.raises(InvalidRequest, match="too few"):
        split_train_val(one)
    no_captions = [LabelledImage(id=str(i), path=tmp_path / "a.png", split="train")
                   for i in range(10)]
    with pytest.raises(InvalidRequest):
        split_train_val(no_captions)
