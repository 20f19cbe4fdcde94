"""Steering math, probe fitting, storage and parsing on synthetic embeddings (fast)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from clipsearch.embeddings import l2_normalize
from clipsearch.errors import InvalidRequest, VectorDimensionError
from clipsearch.settings import Settings
from clipsearch.steering import (
    Probe,
    ProbeMismatch,
    ProbeStore,
    UnknownProbe,
    apply_steer,
    parse_steer,
)
from clipsearch.steering.fit import FitOptions, fit_probe
from clipsearch.steering.labels import from_folders, from_labels_file
from tests.steering_fixtures import attribute_embeddings, make_probe

DIM = 64


# --------------------------------------------------------------------------- apply_steer


def test_scale_zero_returns_the_query_and_result_is_unit() -> None:
    rng = np.random.default_rng(1)
    q = l2_normalize(rng.normal(size=DIM))[0]
    probe = make_probe(rng.normal(size=DIM))
    assert np.allclose(apply_steer(q, probe, 0.0), q, atol=1e-6)
    for scale in (-2.0, -0.3, 0.7, 2.0):
        out = apply_steer(q, probe, scale)
        assert out.dtype == np.float32 and out.shape == q.shape
        assert abs(float(np.linalg.norm(out)) - 1.0) < 1e-5


def test_steered_query_moves_monotonically_along_the_direction() -> None:
    rng = np.random.default_rng(2)
    q = l2_normalize(rng.normal(size=DIM))[0]
    probe = make_probe(rng.normal(size=DIM))
    along = [float(apply_steer(q, probe, s) @ probe.vector) for s in np.linspace(-2, 2, 9)]
    assert all(b > a for a, b in itertools.pairwise(along))
    assert along[-1] > 0.85 and along[0] < -0.85  # |scale| 2 dominates a unit query


def test_steering_keeps_the_row_shape_and_normalises_the_input() -> None:
    rng = np.random.default_rng(3)
    q = rng.normal(size=(1, DIM)).astype(np.float32) * 5  # not unit: normalised first
    probe = make_probe(rng.normal(size=DIM))
    out = apply_steer(q, probe, 1.0)
    assert out.shape == (1, DIM)
    expected = l2_normalize(l2_normalize(q)[0] + probe.vector)[0]
    assert np.allclose(out[0], expected, atol=1e-6)


@pytest.mark.parametrize("scale", [2.01, -3.0, float("nan"), float("inf")])
def test_scale_outside_the_range_is_refused(scale: float) -> None:
    probe = make_probe(np.ones(DIM))
    with pytest.raises(InvalidRequest) as err:
        apply_steer(l2_normalize(np.ones(DIM))[0], probe, scale)
    assert err.value.reason == "invalid_steer"


def test_wrong_dimension_and_cancelling_vectors_are_refused() -> None:
    probe = make_probe(np.ones(DIM))
    with pytest.raises(VectorDimensionError, match="probe 'textness' is 64-d"):
        apply_steer(np.ones(DIM + 1, dtype=np.float32), probe, 1.0)
    with pytest.raises(InvalidRequest) as err:
        apply_steer(-probe.vector, probe, 1.0)  # q + d = 0: no direction left
    assert err.value.reason == "degenerate_vector"


def test_steering_raises_the_share_of_attribute_images_in_the_top_k() -> None:
    docs, labels, _direction = attribute_embeddings(2000, DIM, seed=4)
    probe = fit_probe(docs, labels, name="p", attribute="a", model_id="m")
    rng = np.random.default_rng(5)
    queries = l2_normalize(rng.normal(size=(30, DIM)))
    shares = []
    for scale in (-2.0, -1.0, 0.0, 1.0, 2.0):
        tops = [np.argsort(-(docs @ apply_steer(q, probe, scale)))[:10] for q in queries]
        shares.append(float(np.mean([labels[t].mean() for t in tops])))
    assert all(b >= a for a, b in itertools.pairwise(shares)), shares
    assert shares[0] < 0.05 and shares[-1] > 0.95


# --------------------------------------------------------------------------- parse_steer


def test_parse_steer_accepts_name_and_scale() -> None:
    spec = parse_steer("textness:1.5")
    assert (spec.probe, spec.scale) == ("textness", 1.5)
    assert parse_steer(" my-probe.v2 : -2 ").scale == -2.0


@pytest.mark.parametrize("text", ["textness", "textness:", ":1", "a:b:1", "textness:abc",
                                  "textness:2.5", "textness:nan", "../etc:1", "a b:1"])
def test_parse_steer_refuses_bad_values(text: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        parse_steer(text)
    assert err.value.reason == "invalid_steer"


# --------------------------------------------------------------------------- fit_probe


def test_fit_recovers_the_direction_with_held_out_accuracy() -> None:
    docs, labels, direction = attribute_embeddings(600, DIM, seed=6)
    probe = fit_probe(docs, labels, name="p", attribute="a", model_id="m",
                      options=FitOptions(test_fraction=0.3, seed=1))
    assert probe.quality.accuracy > 0.95 and probe.quality.balanced_accuracy > 0.95
    assert probe.quality.n_test == 180 and probe.quality.n_train == 420
    assert (probe.n_positive, probe.n_negative) == (int(labels.sum()), int((~labels).sum()))
    assert float(probe.vector @ direction) > 0.8
    predicted = probe.decision(docs) > 0
    assert (predicted == labels).mean() > 0.95


def test_fit_refuses_too_few_examples_and_mismatched_shapes() -> None:
    docs, labels, _ = attribute_embeddings(40, DIM)
    few = np.zeros(40, dtype=bool)
    few[:3] = True
    with pytest.raises(InvalidRequest, match="3 positive"):
        fit_probe(docs, few, name="p", attribute="a", model_id="m")
    with pytest.raises(InvalidRequest, match="40 embeddings but 39 labels"):
        fit_probe(docs, labels[:39], name="p", attribute="a", model_id="m")


# --------------------------------------------------------------------------- probe + store


def test_probe_round_trips_and_refuses_a_non_unit_direction(tmp_path: Path) -> None:
    probe = make_probe(np.arange(1, DIM + 1, dtype=np.float32))
    path = probe.save(tmp_path / "p.json")
    assert Probe.load(path) == probe
    data = json.loads(path.read_text())
    assert data["model_id"] == "m" and data["dim"] == DIM and data["attribute"] == "text_label"
    data["direction"] = [x * 2 for x in data["direction"]]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="unit length"):
        Probe.load(path)


def test_store_checks_name_model_and_dimension(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    settings = Settings(data_dir=tmp_path / "data", model=str(model_dir), embedding_dim=DIM)
    store = ProbeStore(settings)
    assert store.names() == []
    with pytest.raises(UnknownProbe, match="known: none"):
        store.get("textness")
    store.save(make_probe(np.ones(DIM), model_id=str(model_dir)))
    store.save(make_probe(np.ones(DIM), name="other", model_id="openai/clip-vit-base-patch32"))
    assert store.names() == ["other", "textness"]
    assert store.get("textness").model_id == str(model_dir)
    # another spelling of the same folder is the same model
    assert ProbeStore(settings, model_id=str(model_dir / ".." / "model")).get("textness")
    with pytest.raises(ProbeMismatch, match="openai/clip-vit-base-patch32"):
        store.get("other")
    with pytest.raises(ProbeMismatch, match="64-d"):
        ProbeStore(settings, dim=128).get("textness")
    with pytest.raises(UnknownProbe, match="known: other, textness"):
        store.get("missing")
    with pytest.raises(UnknownProbe, match="invalid probe name"):
        store.get("../data/probes/textness")
    with pytest.raises(InvalidRequest, match="exists"):
        store.save(make_probe(np.ones(DIM), model_id=str(model_dir)), overwrite=False)
    (store.directory / "broken.json").write_text("{not json")
    with pytest.raises(InvalidRequest) as err:
        store.get("broken")
    assert err.value.reason == "invalid_probe"


def test_probe_store_refusal_is_a_422_kind_of_error() -> None:
    from clipsearch.http_errors import status_for

    assert status_for(ProbeMismatch("x")) == 422 and status_for(UnknownProbe("x")) == 422


# --------------------------------------------------------------------------- labels


def test_labels_file_jsonl_and_csv(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(
        '{"file": "x.png", "labels": ["text_label"]}\n\n'
        '{"file": "y.png", "labels": []}\n'
        '{"file": "/abs/z.png", "label": "yes"}\n{"file": "w.png", "label": false}\n')
    items = from_labels_file(tmp_path / "a.jsonl", "text_label")
    assert [(i.path, i.positive) for i in items] == [
        (tmp_path / "x.png", True), (tmp_path / "y.png", False), (Path("/abs/z.png"), True),
        (tmp_path / "w.png", False)]
    (tmp_path / "b.csv").write_text("file,label\nx.png,1\ny.png,0\n")
    assert [i.positive for i in from_labels_file(tmp_path / "b.csv", "t")] == [True, False]
    (tmp_path / "c.csv").write_text("file,labels\nx.png,text_label|other\ny.png,other\n")
    assert [i.positive for i in from_labels_file(tmp_path / "c.csv", "text_label")] == [
        True, False]


@pytest.mark.parametrize(("content", "message"), [
    ('{"file": "x.png", "label": "maybe"}\n', "not true/false"),
    ('{"file": "x.png"}\n', "neither 'label' nor"),
    ('{"label": true}\n', "no 'file'"),
    ("not json\n", "not JSON"),
    ("[1, 2]\n", "not a JSON object"),
])
def test_labels_file_errors_name_the_line(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "l.jsonl").write_text(content)
    with pytest.raises(InvalidRequest, match=message):
        from_labels_file(tmp_path / "l.jsonl", "a")
    with pytest.raises(InvalidRequest, match="does not exist"):
        from_labels_file(tmp_path / "missing.jsonl", "a")


def test_folders(tmp_path: Path) -> None:
    for sub, names in (("pos", ["a.png", "b.JPG", "notes.txt"]), ("neg", ["c.png"])):
        (tmp_path / sub).mkdir()
        for n in names:
            (tmp_path / sub / n).write_bytes(b"")
    items = from_folders(tmp_path / "pos", tmp_path / "neg")
    assert [(i.path.name, i.positive) for i in items] == [
        ("a.png", True), ("b.JPG", True), ("c.png", False)]
    with pytest.raises(InvalidRequest, match="is not a folder"):
        from_folders(tmp_path / "pos", tmp_path / "nope")
