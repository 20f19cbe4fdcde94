"""Probe training end to end: labelled demo images, the tiny CLIP, the CLI (a few seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipsearch.cli import main
from clipsearch.datasets.scenes import TEXT_LABEL, DemoDataset, make_demo_dataset
from clipsearch.errors import InvalidRequest
from clipsearch.models.model import ClipEncoder
from clipsearch.settings import Settings
from clipsearch.steering import ProbeMismatch, ProbeStore, apply_steer
from clipsearch.steering.labels import LabelledImage, from_labels_file
from clipsearch.steering.train import TrainRequest, train_probe


@pytest.fixture(scope="module")
def labelled_demo(tmp_path_factory: pytest.TempPathFactory) -> DemoDataset:
    return make_demo_dataset(tmp_path_factory.mktemp("steer-demo"), n_per_category=4,
                             image_size=48, captions_per_image=1, text_label_fraction=0.5)


@pytest.fixture(scope="module")
def encoder(tiny_clip_dir: Path) -> ClipEncoder:
    return ClipEncoder.load(str(tiny_clip_dir), threads=1, runtime="torch")


# --------------------------------------------------------------------------- demo attribute


def test_text_labels_are_opt_in_and_leave_the_default_output_alone(
        tmp_path: Path, labelled_demo: DemoDataset) -> None:
    plain = make_demo_dataset(tmp_path / "plain", n_per_category=4, image_size=48,
                              captions_per_image=1)
    assert all(r.labels is None for r in plain.records)
    assert all("labels" not in json.loads(line)
               for line in plain.manifest.read_text().splitlines())
    rows = [json.loads(line) for line in labelled_demo.manifest.read_text().splitlines()]
    assert all(row["labels"] in ([], [TEXT_LABEL]) for row in rows)
    n_labelled = sum(bool(row["labels"]) for row in rows)
    assert 0 < n_labelled < len(rows)
    # same scenes and captions with or without labels; labelled images differ only there
    for a, b in zip(plain.records, labelled_demo.records, strict=True):
        assert (a.id, a.captions, a.split, a.category) == (b.id, b.captions, b.split, b.category)
        same = np.array_equal(np.asarray(Image.open(plain.root / a.file)),
                              np.asarray(Image.open(labelled_demo.root / b.file)))
        assert same == (not b.labels)
    with pytest.raises(ValueError, match="text_label_fraction"):
        make_demo_dataset(tmp_path / "bad", n_per_category=1, text_label_fraction=1.5)


def test_a_label_is_a_bright_box_with_dark_letters(labelled_demo: DemoDataset) -> None:
    rec = next(r for r in labelled_demo.records if r.labels)
    arr = np.asarray(Image.open(labelled_demo.root / rec.file).convert("L"), dtype=np.int32)
    assert (arr > 225).mean() > 0.05 and (arr < 40).sum() > 10


# --------------------------------------------------------------------------- training


def test_train_probe_on_labelled_images_saves_a_usable_probe(
        tmp_path: Path, labelled_demo: DemoDataset, encoder: ClipEncoder) -> None:
    settings = Settings(data_dir=tmp_path, model=encoder.model_id)
    items = from_labels_file(labelled_demo.manifest, TEXT_LABEL)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    items += [LabelledImage(path=broken, positive=True),
              LabelledImage(path=tmp_path / "missing.png", positive=False)]
    result = train_probe(settings, TrainRequest(name="textness", attribute=TEXT_LABEL),
                         items, encoder=encoder)
    assert len(result.skipped) == 2 and "broken.png" in result.skipped[0]
    probe = ProbeStore(settings).get("textness")
    assert probe == result.probe and probe.model_id == encoder.model_id
    assert probe.dim == encoder.dim and probe.attribute == TEXT_LABEL
    assert probe.n_positive + probe.n_negative == len(labelled_demo.records)
    assert probe.quality.n_test + probe.quality.n_train == len(labelled_demo.records)
    q = encoder.embed_texts(["a forest"]).vectors[0]
    assert float(apply_steer(q, probe, 1.0) @ probe.vector) > float(q @ probe.vector)
    with pytest.raises(ProbeMismatch, match="train it again"):
        ProbeStore(settings.model_copy(update={"model": "openai/clip-vit-base-patch32"})
                   ).get("textness")


def test_train_probe_refuses_a_single_class(
        tmp_path: Path, labelled_demo: DemoDataset, encoder: ClipEncoder) -> None:
    items = [LabelledImage(path=labelled_demo.root / r.file, positive=True)
             for r in labelled_demo.records]
    with pytest.raises(InvalidRequest, match="0 negative"):
        train_probe(Settings(data_dir=tmp_path), TrainRequest(name="x", attribute="a"), items,
                    encoder=encoder)
    assert not (tmp_path / "probes").exists()


# --------------------------------------------------------------------------- CLI


def test_cli_probe_train_and_list(tmp_path: Path, labelled_demo: DemoDataset,
                                  tiny_clip_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CLIPSEARCH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CLIPSEARCH_MODEL", str(tiny_clip_dir))
    monkeypatch.setenv("CLIPSEARCH_RUNTIME", "torch")
    assert main(["probe", "list"]) == 0
    assert "no probes" in capsys.readouterr().out
    pos, neg = tmp_path / "pos", tmp_path / "neg"
    pos.mkdir()
    neg.mkdir()
    for r in labelled_demo.records:
        src = labelled_demo.root / r.file
        ((pos if r.labels else neg) / src.name).write_bytes(src.read_bytes())
    assert main(["probe", "train", "--name", "signs", "--positives", str(pos),
                 "--negatives", str(neg)]) == 0
    out = capsys.readouterr().out
    assert "held-out accuracy" in out and "signs.json" in out
    assert main(["probe", "train", "--name", "textness", "--attribute", TEXT_LABEL,
                 "--labels", str(labelled_demo.manifest)]) == 0
    capsys.readouterr()
    assert main(["probe", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [p["name"] for p in listed] == ["signs", "textness"]
    assert listed[1]["attribute"] == TEXT_LABEL and listed[1]["n"] == len(labelled_demo.records)
    # errors are one line on stderr with a non-zero status, nothing written
    assert main(["probe", "train", "--name", "x", "--positives", str(pos)]) == 1
    assert "--negatives" in capsys.readouterr().err
    assert main(["probe", "train", "--name", "textness", "--no-overwrite",
                 "--attribute", TEXT_LABEL, "--labels", str(labelled_demo.manifest)]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["probe", "train", "--name", "../bad", "--labels",
                 str(labelled_demo.manifest)]) == 2
