"""The ``feed`` / ``export`` subcommands, in-process (the SIGKILL test runs them for real)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from clipsearch.documents import DocumentFields
from clipsearch.embeddings import l2_normalize
from clipsearch.errors import InvalidRequest
from feeder.commands import register
from feeder.store import EmbeddingStore


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_feed_options_map_to_the_request(tmp_path: Path) -> None:
    args = parse(["feed", str(tmp_path), "--format", "rsicd", "--split", "test", "--limit",
                  "5", "--workers", "2", "--reencode"])
    assert (args.format, args.split, args.limit, args.workers, args.reencode) == (
        "rsicd", "test", 5, 2, True)


def test_feed_of_a_missing_source_fails_clearly(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIPSEARCH_DATA_DIR", str(tmp_path))
    args = parse(["feed", str(tmp_path / "nope"), "--no-progress"])
    with pytest.raises(InvalidRequest, match="does not exist"):
        args.func(args)


def test_export_writes_vespa_puts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    store = EmbeddingStore(tmp_path / "embeddings")
    vecs = l2_normalize(np.random.default_rng(0).normal(size=(3, 512)).astype(np.float32))
    fields = [DocumentFields(id=f"d:{i}", dataset="d", captions=[f"c {i}"], model_id="m")
              for i in range(3)]
    store.write(fields, ["h"] * 3, vecs)
    vecs[0] = np.nan  # a broken row written later replaces d:0 and is not exported
    store.write(fields[:1], ["h"], vecs[:1])
    monkeypatch.setenv("CLIPSEARCH_DATA_DIR", str(tmp_path))
    out = tmp_path / "out" / "feed.jsonl"
    args = parse(["export", "--out", str(out), "--namespace", "test"])
    assert args.func(args) == 0
    puts = [json.loads(line) for line in out.read_text().splitlines()]
    assert [p["put"] for p in puts] == ["id:test:image::d:1", "id:test:image::d:2"]
    assert puts[0]["fields"]["caption"] == "c 1"
    assert "1 with a broken embedding skipped" in capsys.readouterr().err
