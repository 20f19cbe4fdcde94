"""The demo dataset generator: deterministic, labelled, readable by the feeder, with hard cases."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from clipsearch.datasets.readers import SourceFormat, read_source
from clipsearch.datasets.records import SourceRecord
from clipsearch.datasets.scenes import CATEGORIES, SceneKind, make_demo_dataset


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(root.rglob("*")):
        if f.is_file():
            h.update(f.relative_to(root).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return make_demo_dataset(tmp_path_factory.mktemp("demo") / "a", n_per_category=20,
                             image_size=48)


def test_same_seed_same_files_other_seed_differs(demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    again = make_demo_dataset(tmp_path / "b", n_per_category=20, image_size=48)
    assert _digest(demo.root) == _digest(again.root)
    other = make_demo_dataset(tmp_path / "c", n_per_category=20, image_size=48, seed=1)
    assert _digest(other.root) != _digest(demo.root)


def test_every_category_split_and_kind_is_present(demo) -> None:  # type: ignore[no-untyped-def]
    assert demo.categories == sorted(c.name for c in CATEGORIES)
    assert len(demo.records) == 20 * len(CATEGORIES)
    assert {r.split for r in demo.records} == {"train", "val", "test"}
    assert {s.kind for s in demo.scenes} == set(SceneKind)
    assert all(len(r.captions) == 5 for r in demo.records)


def test_visual_scenes_never_name_their_category_verbal_ones_do(demo) -> None:  # type: ignore[no-untyped-def]
    by_name = {c.name: c for c in CATEGORIES}
    kinds = {s.id: s.kind for s in demo.scenes}
    for r in demo.records:
        words = " ".join(r.captions).lower()
        names = by_name[r.category].synonyms
        if kinds[r.id] == SceneKind.visual:
            assert not any(f" {n} " in f" {words} " for n in names), r.captions
        elif kinds[r.id] == SceneKind.verbal:
            assert any(n in words for n in names), r.captions


def test_the_feeder_reads_it_without_rejections(demo) -> None:  # type: ignore[no-untyped-def]
    rows = list(read_source(demo.manifest, SourceFormat.generic))
    assert all(isinstance(r, SourceRecord) for r in rows)
    assert len(rows) == len(demo.records)
    first = rows[0]
    assert isinstance(first, SourceRecord) and first.file.is_file()
    assert first.category == demo.records[0].category


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown demo categories"):
        make_demo_dataset(tmp_path, n_per_category=1, categories=["water", "volcano"])
    with pytest.raises(ValueError):
        make_demo_dataset(tmp_path, n_per_category=0)
