"""Embedding shards are reused only for the same embedding space, not just the same model
name: a model retrained in place keeps its path but computes other vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from clipsearch.documents import DocumentFields
from clipsearch.settings import Settings
from feeder.commands import run_feed_async
from feeder.store import EmbeddingStore
from tests.feeder_fixtures import (
    MAX_PIXELS,
    BytesEmbedder,
    MemoryIndex,
    feed_request,
    make_generic,
)


class SpacedEmbedder(BytesEmbedder):
    """The same model name, a declared embedding space (as ClipEncoder.space_id)."""

    def __init__(self, space: str) -> None:
        super().__init__(refuse=b"\x00never")
        self.space_id = space


async def test_a_model_retrained_in_place_is_encoded_again(tmp_path: Path) -> None:
    exp = make_generic(tmp_path / "src", n_good=4)
    settings = Settings(data_dir=tmp_path / "data", max_image_pixels=MAX_PIXELS)
    request = feed_request(exp.source, tmp_path / "dead.jsonl")
    first, again, retrained = SpacedEmbedder("a" * 64), SpacedEmbedder("a" * 64), \
        SpacedEmbedder("b" * 64)
    for embedder in (first, again, retrained):
        report = await run_feed_async(settings, request, index=MemoryIndex(), encoder=embedder)
        assert report.consistent
    assert sum(first.calls) == len(exp.good)
    assert again.calls == []  # same space: every vector comes from the shards
    assert sum(retrained.calls) == len(exp.good)  # same name, other space: encoded again
    spaces = {e.space for e in EmbeddingStore(settings.data_dir / "embeddings").catalog().values()}
    assert spaces == {"b" * 64}


def test_shards_written_before_the_space_column_still_read(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path, space="c" * 64)
    vec = np.eye(1, 8, dtype=np.float32)
    shard = store.write([DocumentFields(id="d:1", dataset="d", model_id="m")], ["h"], vec)
    legacy = pq.read_table(shard).drop_columns(["space"])
    pq.write_table(legacy, shard)
    entry = store.catalog()["d:1"]
    assert entry.space is None and entry.reusable_for("h", "m", "e" * 64)
    assert not entry.reusable_for("h", "other-model", None)
    assert [row.fields.id for row in store.rows()] == ["d:1"]

    fresh = EmbeddingStore(tmp_path / "new", space="c" * 64)
    fresh.write([DocumentFields(id="d:2", dataset="d", model_id="m")], ["h"], vec)
    entry = fresh.catalog()["d:2"]
    assert entry.space == "c" * 64
    assert entry.reusable_for("h", "m", "c" * 64) and not entry.reusable_for("h", "m", "e" * 64)
    assert not entry.reusable_for("other-bytes", "m", "c" * 64)
    assert [row.fields.id for row in fresh.rows()] == ["d:2"]
