"""Distillation on a tiny teacher: the loss falls and held-out agreement rises in seconds, the
saved student loads like any model and embeds into its teacher's space (closer to the teacher
than the untrained student; the provenance check accepts the pair), weight inheritance and its
refusal, a killed run resumes where it stopped, and bad input gets a clear error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import cast

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file, save_file
from transformers import CLIPModel, CLIPTextConfig, CLIPTextModelWithProjection

from clipsearch.cli import main as cli_main
from clipsearch.datasets.scenes import make_demo_dataset
from clipsearch.embedder import Embedder
from clipsearch.evaluation.data import LabelledImage, load_labelled
from clipsearch.index.generations import EmbeddingSpaceMismatch, Generation, check_space
from clipsearch.models.bpe import build_clip_tokenizer
from clipsearch.models.identity import SPACE_FILE, identify
from clipsearch.models.model import ClipEncoder
from clipsearch.models.runtimes.torch_runtime import TorchRuntime
from clipsearch.training.demo_model import DemoModelSpec, init_random_clip
from clipsearch.training.distill.checkpoint import CheckpointMismatch, checkpoint_dir
from clipsearch.training.distill.config import DistillConfig, DistillResult, EpochRecord, Inherit
from clipsearch.training.distill.data import NoImages
from clipsearch.training.distill.loop import distill
from clipsearch.training.distill.save import load_result
from clipsearch.training.distill.student import InheritanceRefused, build_student
from clipsearch.training.distill.teacher import NoVisionTower, load_teacher
from services.api.generation_guard import space_status

TEACHER = DemoModelSpec(image_size=32, patch_size=8, hidden=32, layers=2, projection_dim=32)
LIMITS = {"max_bytes": 10_000_000, "max_pixels": 10_000_000}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[LabelledImage]]:
    root = tmp_path_factory.mktemp("distill")
    data = make_demo_dataset(root / "data", n_per_category=10, image_size=32,
                             categories=["water", "forest", "airport", "desert"],
                             hard_fraction=0.0, val_fraction=0.25, test_fraction=0.0)
    return init_random_clip(root / "teacher", TEACHER), load_labelled(data.manifest)


def _cfg(teacher: Path, out: Path, **kw: object) -> DistillConfig:
    base: dict[str, object] = {"teacher": str(teacher), "out_dir": out, "epochs": 4,
                               "batch_size": 10, "lr": 3e-3, "threads": 1, "progress": False,
                               "temperature_switch_epoch": 2}
    return DistillConfig(**{**base, **kw})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def run(setup: tuple[Path, list[LabelledImage]],
        tmp_path_factory: pytest.TempPathFactory) -> tuple[DistillResult, Path]:
    teacher, items = setup
    out = tmp_path_factory.mktemp("student") / "student"
    return distill(_cfg(teacher, out), items), out


@pytest.fixture(scope="module")
def encoders(setup: tuple[Path, list[LabelledImage]],
             run: tuple[DistillResult, Path]) -> tuple[ClipEncoder, ClipEncoder]:
    """(student, teacher) loaded through the normal path, as every service loads a model."""
    return (ClipEncoder.load(str(run[1]), runtime="torch"),
            ClipEncoder.load(str(setup[0]), runtime="torch"))


def test_loss_falls_and_held_out_agreement_rises(run: tuple[DistillResult, Path]) -> None:
    result, _ = run
    losses = [e.train_loss for e in result.epochs if e.train_loss is not None]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert [e.temperature for e in result.epochs[1:]] == [4.0, 4.0, 2.0, 2.0]
    assert result.best_held_out_cosine > result.untrained_held_out_cosine + 0.15
    assert result.student.hidden_size == 16 and result.student.num_hidden_layers == 1
    assert result.student.num_attention_heads == 2 and result.student.inherited_layers is None


def test_saved_student_loads_and_embeds_into_the_teachers_space(
        setup: tuple[Path, list[LabelledImage]], run: tuple[DistillResult, Path],
        encoders: tuple[ClipEncoder, ClipEncoder]) -> None:
    teacher_dir, items = setup
    result, out = run
    assert load_result(out) == result
    assert not checkpoint_dir(out).exists()  # removed once the student is saved
    card = (out / "README.md").read_text()
    assert str(teacher_dir) in card and f"{result.best_held_out_cosine:.4f}" in card
    assert "x**" in card  # the measured speed ratio
    student, teacher = encoders
    # the declaration: one space, two fingerprints
    assert student.identity and teacher.identity
    assert student.space_id == teacher.space_id == teacher.identity.fingerprint
    assert student.identity.fingerprint != teacher.identity.fingerprint
    assert json.loads((out / SPACE_FILE).read_text())["teacher"] == str(teacher_dir)
    # the text tower is the teacher's: identical text vectors
    texts = ["a lake seen from above", "dense forest"]
    np.testing.assert_allclose(student.embed_texts(texts).vectors,
                               teacher.embed_texts(texts).vectors, atol=1e-6)
    # images: the student is closer to the teacher than the same student untrained
    held = [it for it in items if it.split == "val"]
    blobs = [it.path.read_bytes() for it in held]
    pixels = teacher.preprocess_images(blobs, **LIMITS)
    t_vec = teacher.embed_pixels(pixels).vectors
    s_vec = student.embed_images(blobs, **LIMITS).vectors
    floor_model, _ = build_student(CLIPModel.from_pretrained(teacher_dir),
                                   _cfg(teacher_dir, out))
    f_vec = TorchRuntime(floor_model.eval()).image(pixels)
    f_vec /= np.linalg.norm(f_vec, axis=1, keepdims=True)
    trained, floor = np.sum(s_vec * t_vec, axis=1).mean(), np.sum(f_vec * t_vec, axis=1).mean()
    assert trained > floor + 0.15, (trained, floor)


def test_provenance_check_accepts_student_and_teacher_as_one_space(
        setup: tuple[Path, list[LabelledImage]], encoders: tuple[ClipEncoder, ClipEncoder],
        tiny_clip_dir: Path) -> None:
    teacher_dir, _ = setup
    t_ident, dim, _ = identify(str(teacher_dir))
    gen = Generation(name="g1", table="images_g1", dim=dim, model_id=str(teacher_dir),
                     space=t_ident.space)
    student = encoders[0]
    check_space(gen, model_id=student.model_id, space=student.space_id, doing="search")
    # the API's guard (409 otherwise) reads model_id and space_id, which ClipEncoder has
    assert space_status(gen, cast(Embedder, student)).startswith("ok")
    other = ClipEncoder.load(str(tiny_clip_dir), runtime="torch")
    with pytest.raises(EmbeddingSpaceMismatch):
        check_space(gen, model_id=other.model_id, space=other.space_id, doing="search")
    assert space_status(gen, cast(Embedder, other)).startswith("mismatch")


def test_weight_inheritance_and_its_refusal(setup: tuple[Path, list[LabelledImage]],
                                            tmp_path: Path) -> None:
    teacher_dir, _ = setup
    teacher = CLIPModel.from_pretrained(teacher_dir)
    student, shape = build_student(teacher, _cfg(teacher_dir, tmp_path, width=1.0,
                                                 inherit=Inherit.layers))
    assert shape.inherited_layers == [0] and shape.hidden_size == 32
    t_layer = teacher.vision_model.encoder.layers[0].state_dict()
    for name, value in student.vision_model.encoder.layers[0].state_dict().items():
        assert torch.equal(value, t_layer[name]), name
    assert torch.equal(student.visual_projection.weight, teacher.visual_projection.weight)
    assert torch.equal(student.text_projection.weight, teacher.text_projection.weight)
    with pytest.raises(InheritanceRefused, match=r"hidden_size 16 vs the teacher's 32.*--width 1"):
        build_student(teacher, _cfg(teacher_dir, tmp_path, inherit=Inherit.layers))
    with pytest.raises(InheritanceRefused, match="num_attention_heads 4"):
        build_student(teacher, _cfg(teacher_dir, tmp_path, width=1.0, heads=4,
                                    inherit=Inherit.layers))
    _, auto = build_student(teacher, _cfg(teacher_dir, tmp_path))  # auto: random, no error
    assert auto.inherited_layers is None


def test_a_killed_run_resumes_from_its_checkpoint(setup: tuple[Path, list[LabelledImage]],
                                                  run: tuple[DistillResult, Path],
                                                  tmp_path: Path) -> None:
    teacher_dir, items = setup
    full, _ = run
    out = tmp_path / "student"
    cfg = _cfg(teacher_dir, out)

    def kill_after_epoch_2(record: EpochRecord) -> None:
        if record.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        distill(cfg, items, on_epoch=kill_after_epoch_2)
    assert (checkpoint_dir(out) / "checkpoint.pt").is_file() and not out.exists()
    with pytest.raises(CheckpointMismatch, match="differs in: lr"):
        distill(_cfg(teacher_dir, out, lr=1e-3), items)
    resumed = distill(cfg.model_copy(update={"progress": True}), items)
    assert resumed.resumed_from_epoch == 2
    # same weights as the uninterrupted run: every epoch's held-out cosine matches
    assert [e.epoch for e in resumed.epochs] == [0, 1, 2, 3, 4]
    np.testing.assert_allclose([e.held_out_cosine for e in resumed.epochs],
                               [e.held_out_cosine for e in full.epochs], atol=1e-5)
    assert not checkpoint_dir(out).exists()


def test_a_run_killed_inside_an_epoch_resumes_at_its_step(
        setup: tuple[Path, list[LabelledImage]], run: tuple[DistillResult, Path],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mid-epoch checkpoints (checkpoint_every_s; 0 = after every step): a run killed inside
    epoch 2 resumes at the step it reached and ends with the uninterrupted run's epochs."""
    from clipsearch.training.distill import loop

    teacher_dir, items = setup
    full, _ = run
    out = tmp_path / "student"
    real_step = loop._Run._step
    after_epoch_1 = [-1]  # steps taken since epoch 1 ended (-1: not ended yet)

    def count_epochs(record: EpochRecord) -> None:
        if record.epoch == 1:
            after_epoch_1[0] = 0

    def dying_step(self: object, *args: object, **kwargs: object) -> object:
        if after_epoch_1[0] >= 0:
            after_epoch_1[0] += 1
            if after_epoch_1[0] == 2:  # the second step of epoch 2
                raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(loop._Run, "_step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        distill(_cfg(teacher_dir, out, checkpoint_every_s=0), items, on_epoch=count_epochs)
    saved = json.loads(torch.load(checkpoint_dir(out) / "checkpoint.pt",
                                  weights_only=True)["meta"])
    assert (saved["epoch"], saved["epoch_step"]) == (1, 1)  # inside epoch 2, one step done
    monkeypatch.setattr(loop._Run, "_step", real_step)
    resumed = distill(_cfg(teacher_dir, out), items)
    assert resumed.resumed_from_epoch == 1
    np.testing.assert_allclose([e.held_out_cosine for e in resumed.epochs],
                               [e.held_out_cosine for e in full.epochs], atol=1e-5)
    np.testing.assert_allclose([e.train_loss or 0 for e in resumed.epochs],
                               [e.train_loss or 0 for e in full.epochs], atol=1e-5)


def test_ratios_outside_zero_one_are_refused(setup: tuple[Path, list[LabelledImage]],
                                             tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    teacher_dir, _ = setup
    for bad in ({"width": 0.0}, {"width": 1.5}, {"depth": -0.5}, {"depth": 2}):
        with pytest.raises(ValidationError, match=r"width|depth"):
            _cfg(teacher_dir, tmp_path, **bad)
    rc = cli_main(["distill", "--teacher", str(teacher_dir), "--source", str(tmp_path),
                   "--out", str(tmp_path / "s"), "--depth", "1.2"])
    assert rc == 2 and "--depth" in capsys.readouterr().err


def test_no_images_is_a_clear_error(setup: tuple[Path, list[LabelledImage]], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    teacher_dir, items = setup
    with pytest.raises(NoImages, match="no images"):
        distill(_cfg(teacher_dir, tmp_path / "s"), [])
    only_test = [it.model_copy(update={"split": "test"}) for it in items]
    with pytest.raises(NoImages, match="too few images"):
        distill(_cfg(teacher_dir, tmp_path / "s"), only_test)
    (tmp_path / "empty" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "manifest.jsonl").write_text("")
    rc = cli_main(["distill", "--teacher", str(teacher_dir), "--source",
                   str(tmp_path / "empty" / "manifest.jsonl"), "--out", str(tmp_path / "s")])
    assert rc == 1 and "no readable images" in capsys.readouterr().err


def test_teacher_without_a_vision_tower_is_refused(setup: tuple[Path, list[LabelledImage]],
                                                   tmp_path: Path) -> None:
    teacher_dir, items = setup
    text_only = tmp_path / "text-only"
    config = CLIPModel.from_pretrained(teacher_dir).config
    CLIPTextModelWithProjection(cast(CLIPTextConfig, config.text_config)).save_pretrained(
        text_only)
    build_clip_tokenizer().save_pretrained(text_only)
    with pytest.raises(NoVisionTower, match="no image tower"):
        distill(_cfg(text_only, tmp_path / "s"), items)
    stripped = tmp_path / "stripped"  # a CLIP config whose files lack the vision weights
    shutil.copytree(teacher_dir, stripped)
    weights = load_file(stripped / "model.safetensors")
    save_file({k: v for k, v in weights.items() if not k.startswith("vision_model.")},
              stripped / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(NoVisionTower, match="vision weights are missing"):
        load_teacher(str(stripped))
