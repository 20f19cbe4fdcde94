"""Dataset readers: each format read exactly, bad rows turned into typed rejections."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipsearch.datasets.readers import SourceFormat, detect_format, read_source
from clipsearch.datasets.readers.karpathy import category_from_name
from clipsearch.datasets.readers.text import decode_text
from clipsearch.datasets.records import Action, Reason, Rejection, SourceRecord
from tests.feeder_fixtures import make_generic, make_imageclef, make_karpathy


def split_items(items: list[object]) -> tuple[list[SourceRecord], list[Rejection]]:
    recs = [i for i in items if isinstance(i, SourceRecord)]
    rejs = [i for i in items if isinstance(i, Rejection)]
    return recs, rejs


def test_generic_jsonl(tmp_path: Path) -> None:
    exp = make_generic(tmp_path, n_good=4)
    recs, rejs = split_items(list(read_source(exp.source)))
    by_id = {r.source_id: r for r in recs}
    assert by_id["g1"].captions == ["good image 1", "a field"]
    assert by_id["g1"].category == "cat1" and by_id["g1"].split == "train"
    assert by_id["g1"].file == (tmp_path / "images/good_001.png").resolve()
    assert by_id["latin"].captions == ["café au lait"]  # cp1252 line repaired
    reasons = {(r.reason, r.action) for r in rejs}
    assert (Reason.non_utf8, Action.repaired) in reasons
    assert (Reason.invalid_row, Action.skipped) in reasons  # the line that is not JSON
    # the duplicate row is still a record here: de-duplication happens when planning
    assert [r.source_id for r in recs].count("g0") == 2


def test_generic_csv_and_folder_detection(tmp_path: Path) -> None:
    exp = make_generic(tmp_path, n_good=3, csv=True)
    assert detect_format(tmp_path) == SourceFormat.generic
    recs, rejs = split_items(list(read_source(tmp_path)))
    by_id = {r.source_id: r for r in recs}
    assert by_id["g2"].captions == ["good image 2", "a field"]
    assert by_id["latin"].captions == ["café au lait"]
    assert by_id["empty"].category is None
    assert any(r.reason == Reason.non_utf8 for r in rejs)
    assert exp.source.name == "manifest.csv"


def test_generic_defaults_and_bad_rows(tmp_path: Path) -> None:
    (tmp_path / "m.jsonl").write_text(
        json.dumps({"file": "a/b.png", "caption": "one"}) + "\n"
        + json.dumps({"id": "x"}) + "\n" + json.dumps([1, 2]) + "\n\n")
    recs, rejs = split_items(list(read_source(tmp_path / "m.jsonl", dataset="mine")))
    assert recs == [SourceRecord(source_id="b", file=(tmp_path / "a/b.png").resolve(),
                                 captions=["one"], dataset="mine")]
    assert [r.reason for r in rejs] == [Reason.invalid_row, Reason.invalid_row]


def test_rsicd_categories_from_lists_and_prefix(tmp_path: Path) -> None:
    make_karpathy(tmp_path)
    assert detect_format(tmp_path) == SourceFormat.karpathy
    recs, rejs = split_items(list(read_source(tmp_path, SourceFormat.rsicd)))
    by_id = {r.source_id: r for r in recs}
    assert by_id["00017"].category == "bridge"  # numeric name: the class list wins
    assert by_id["airport_1"].category == "airport"
    assert by_id["denseresidential_10"].category == "denseresidential"  # prefix fallback
    assert by_id["beach_3"].category == "beach"
    assert by_id["airport_2"].split == "val" and by_id["airport_2"].dataset == "rsicd"
    assert by_id["airport_1"].captions == ["caption 0 of airport_1.jpg .", "only tokens 0"]
    assert by_id["airport_1"].file == (tmp_path / "RSICD_images" / "airport_1.jpg").resolve()
    # the UTF-16 class file is read and the entry without a filename is rejected
    assert by_id["00018"].category == "port"
    assert any(r.reason == Reason.invalid_row for r in rejs)


def test_ucm_sydney_share_the_karpathy_reader(tmp_path: Path) -> None:
    make_karpathy(tmp_path, dataset="ucm", with_classes=False)
    recs, _ = split_items(list(read_source(tmp_path / "dataset_ucm.json", SourceFormat.ucm)))
    assert {r.dataset for r in recs} == {"ucm"}
    assert {r.source_id: r.category for r in recs}["00017"] is None  # numeric, no list


def test_category_from_name() -> None:
    assert category_from_name("airport_12.jpg") == "airport"
    assert category_from_name("storagetanks_3.jpg") == "storagetanks"
    assert category_from_name("00012.jpg") is None
    assert category_from_name("agricultural00.tif") == "agricultural"


def test_imageclef_layout(tmp_path: Path) -> None:
    exp = make_imageclef(tmp_path)
    assert detect_format(tmp_path) == SourceFormat.imageclef
    recs, rejs = split_items(list(read_source(tmp_path)))
    by_id = {r.source_id: r for r in recs}
    train = by_id["1471-2105-tra-0"]
    assert train.split == "train" and train.captions == ["chest x ray number 0 in training"]
    assert train.file.is_file()
    assert by_id["1471-2105-val-1"].split == "val"
    assert by_id["training-latin"].captions == ["lésion pulmonaire"]
    assert by_id["test-0"].split == "test" and by_id["test-0"].captions == []
    assert not by_id["missing-training"].file.exists()
    assert sum(r.reason == Reason.invalid_row for r in rejs) == 2  # one per captions file
    assert sum(r.reason == Reason.non_utf8 for r in rejs) == 2
    assert len(recs) == len(exp.good) + 2


def test_unusable_sources_raise(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        list(read_source(tmp_path / "nothing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        list(read_source(tmp_path / "empty"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError):
        list(read_source(tmp_path / "bad.json"))
    (tmp_path / "other.json").write_text('{"annotations": []}')
    with pytest.raises(ValueError, match="images"):
        list(read_source(tmp_path / "other.json"))


def test_decode_text_fallbacks() -> None:
    assert decode_text("é".encode()) == ("é", False)
    assert decode_text(b"\xef\xbb\xbfbom") == ("bom", False)
    assert decode_text("é".encode("cp1252")) == ("é", True)
    assert decode_text(b"\x81") == ("\x81", True)
    assert decode_text("ü".encode("utf-16")) == ("ü", False)  # undefined in cp1252: latin-1
