"""The feed end to end: real readers, the tiny CLIP, the embedded index (and a memory index
for failure injection). Counts must add up and the index must equal the source."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from clipsearch.embeddings import l2_normalize
from clipsearch.errors import InvalidRequest
from clipsearch.index import open_index
from clipsearch.settings import Settings
from feeder.commands import FeedRequest, run_feed_async
from feeder.export import ExportRequest, write_vespa_feed
from feeder.store import EmbeddingStore
from tests.feeder_fixtures import (
    MAX_PIXELS,
    BytesEmbedder,
    Expected,
    MemoryIndex,
    feed_request,
    make_generic,
    make_imageclef,
    make_karpathy,
    settings_for,
)


def request(source: Path, tmp: Path, **kw: object) -> FeedRequest:
    return feed_request(source, tmp / "dead.jsonl", **kw)


async def index_ids(settings: Settings, expected: Sequence[str]) -> tuple[int, set[str]]:
    index = open_index(settings)
    try:
        return await index.count(), await index.existing_ids(list(expected))
    finally:
        await index.close()


def dead_reasons(path: Path) -> list[tuple[str, str, str]]:
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    return [(r["id"], r["reason"], r["action"]) for r in rows]


async def test_generic_feed_counts_dead_letters_and_documents(tmp_path: Path,
                                                              tiny_clip_dir: Path, clip) -> None:
    exp = make_generic(tmp_path / "src")
    s = settings_for(tmp_path, tiny_clip_dir)
    report = await run_feed_async(s, request(exp.source, tmp_path), encoder=clip)
    assert report.read == exp.rows
    assert report.indexed == len(exp.good) and report.encoded == len(exp.good)
    assert report.consistent and report.skipped == len(exp.skipped)
    assert report.skipped_by_reason == {"missing_file": 1, "invalid_image": 2,
                                        "image_too_large": 1, "duplicate_id": 1,
                                        "invalid_row": 1}
    assert report.repaired_by_reason == {"empty_caption": 1, "non_utf8": 1}
    assert "skipped: image_too_large" in report.summary()
    reasons = dead_reasons(tmp_path / "dead.jsonl")
    assert ("gen:missing", "missing_file", "skipped") in reasons
    assert ("gen:bomb", "image_too_large", "skipped") in reasons
    assert ("gen:g0", "duplicate_id", "skipped") in reasons
    assert ("gen:empty", "empty_caption", "repaired") in reasons
    count, present = await index_ids(s, exp.good)
    assert count == len(exp.good) and present == set(exp.good)

    index = open_index(s)
    try:
        doc = await index.get("gen:g1")
        assert doc is not None
        assert doc.captions == ["good image 1", "a field"]
        assert (doc.category, doc.split, doc.model_id) == ("cat1", "train", clip.model_id)
        assert Path(doc.image_uri).is_absolute() and Path(doc.image_uri).is_file()
        expected = clip.embed_pixels(
            __import__("feeder.prepare", fromlist=["x"]).prepare_pixels(
                doc.image_uri, spec=clip.preprocess_spec, max_bytes=s.max_image_bytes,
                max_pixels=s.max_image_pixels).payload[None]).vectors[0]
        assert np.allclose(doc.embedding, expected, atol=1e-5)
        empty = await index.get("gen:empty")
        assert empty is not None and empty.captions == []
        latin = await index.get("gen:latin")
        assert latin is not None and latin.captions == ["café au lait"]
    finally:
        await index.close()


async def test_rerun_is_idempotent_and_incremental(tmp_path: Path, tiny_clip_dir: Path,
                                                   clip) -> None:
    exp = make_generic(tmp_path / "src", n_good=4, csv=True)
    s = settings_for(tmp_path, tiny_clip_dir)
    first = await run_feed_async(s, request(exp.source, tmp_path), encoder=clip)
    second = await run_feed_async(s, request(exp.source, tmp_path), encoder=clip)
    assert first.indexed == len(exp.good) and first.consistent
    assert (second.indexed, second.encoded, second.already_indexed) == (0, 0, len(exp.good))
    assert second.consistent and second.read == first.read
    assert await index_ids(s, exp.good) == (len(exp.good), set(exp.good))

    # a caption edit is fed again without encoding; new image bytes are encoded again
    text = exp.source.read_bytes().replace(b"good image 1", b"an edited caption")
    exp.source.write_bytes(text)
    (tmp_path / "src/images/good_002.jpg").write_bytes(
        (tmp_path / "src/images/good_000.png").read_bytes())
    third = await run_feed_async(s, request(exp.source, tmp_path), encoder=clip)
    assert (third.indexed, third.encoded, third.reused_embeddings) == (2, 1, 1)
    index = open_index(s)
    try:
        doc = await index.get("gen:g1")
        assert doc is not None and doc.captions[0] == "an edited caption"
        assert await index.count() == len(exp.good)
    finally:
        await index.close()

    forced = await run_feed_async(s, request(exp.source, tmp_path, reencode=True),
                                  encoder=clip)
    assert forced.encoded == len(exp.good) and forced.indexed == len(exp.good)


async def test_lost_index_is_refilled_from_shards(tmp_path: Path, tiny_clip_dir: Path,
                                                  clip) -> None:
    exp = make_generic(tmp_path / "src", n_good=4)
    s = settings_for(tmp_path, tiny_clip_dir)
    await run_feed_async(s, request(exp.source, tmp_path), encoder=clip)
    fresh = s.model_copy(update={"table": "other"})  # same shards, an empty index
    again = await run_feed_async(fresh, request(exp.source, tmp_path,
                                                embeddings_dir=s.data_dir / "embeddings"),
                                 encoder=clip)
    assert (again.indexed, again.encoded, again.reused_embeddings) == (
        len(exp.good), 0, len(exp.good))
    assert await index_ids(fresh, exp.good) == (len(exp.good), set(exp.good))


async def test_split_and_limit_select(tmp_path: Path, tiny_clip_dir: Path, clip) -> None:
    exp = make_generic(tmp_path / "src", n_good=8)
    s = settings_for(tmp_path, tiny_clip_dir)
    report = await run_feed_async(s, request(exp.source, tmp_path, split="train", limit=3),
                                  encoder=clip)
    assert report.read == 3  # reading stops at the third train record
    assert report.indexed == 3 and report.consistent
    index = open_index(s)
    try:
        for doc_id in await index.existing_ids([f"gen:g{i}" for i in range(8)] + ["gen:empty"]):
            doc = await index.get(doc_id)
            assert doc is not None and doc.split == "train"
    finally:
        await index.close()


@pytest.mark.parametrize("builder", [make_karpathy, make_imageclef])
async def test_other_formats_end_to_end(tmp_path: Path, tiny_clip_dir: Path, clip,
                                        builder) -> None:  # type: ignore[no-untyped-def]
    exp: Expected = builder(tmp_path / "src")
    s = settings_for(tmp_path, tiny_clip_dir)
    report = await run_feed_async(s, request(exp.source, tmp_path), encoder=clip)
    assert report.read == exp.rows and report.consistent
    assert report.indexed == len(exp.good)
    assert report.skipped == len(exp.skipped)
    assert await index_ids(s, exp.good) == (len(exp.good), set(exp.good))


async def test_from_embeddings_and_export(tmp_path: Path, tiny_clip_dir: Path, clip) -> None:
    exp = make_generic(tmp_path / "src", n_good=4)
    s = settings_for(tmp_path, tiny_clip_dir)
    await run_feed_async(s, request(exp.source, tmp_path), encoder=clip)
    shards = s.data_dir / "embeddings"

    elsewhere = Settings(data_dir=tmp_path / "elsewhere", model="no/such-model")
    req = FeedRequest(from_embeddings=shards, progress=False)
    report = await run_feed_async(elsewhere, req)  # no model is loaded on this path
    assert (report.read, report.indexed, report.model_id) == (
        len(exp.good), len(exp.good), clip.model_id)
    assert await index_ids(elsewhere, exp.good) == (len(exp.good), set(exp.good))
    again = await run_feed_async(elsewhere, req)
    assert (again.indexed, again.already_indexed) == (0, len(exp.good))

    out = tmp_path / "feed.jsonl"
    with open(out, "w") as fh:
        assert write_vespa_feed(ExportRequest(embeddings=shards, namespace="ns"), fh) == (
            len(exp.good), 0)
    puts = [json.loads(line) for line in out.read_text().splitlines()]
    assert {p["put"] for p in puts} == {f"id:ns:image::{i}" for i in exp.good}
    one = next(p["fields"] for p in puts if p["put"] == "id:ns:image::gen:g1")
    assert one["caption"] == "good image 1\na field" and one["captions"][1] == "a field"
    assert one["category"] == "cat1" and len(one["embedding"]["values"]) == 512
    assert abs(np.linalg.norm(one["embedding"]["values"]) - 1) < 1e-4


async def test_from_embeddings_refuses_mixed_models_and_empty_dirs(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path / "shards")
    from clipsearch.documents import DocumentFields

    vec = l2_normalize(np.ones((1, 512), np.float32))
    for model in ("m1", "m2"):
        store.write([DocumentFields(id=f"d:{model}", dataset="d", model_id=model)], ["h"], vec)
    s = Settings(data_dir=tmp_path / "data")
    with pytest.raises(InvalidRequest, match="several models"):
        await run_feed_async(s, FeedRequest(from_embeddings=store.root, progress=False),
                             index=MemoryIndex())
    index = MemoryIndex()
    report = await run_feed_async(s, FeedRequest(from_embeddings=store.root, model_id="m2",
                                                 progress=False), index=index)
    assert report.indexed == 1 and set(index.docs) == {"d:m2"}
    with pytest.raises(InvalidRequest, match="no embedding shards"):
        await run_feed_async(s, FeedRequest(from_embeddings=tmp_path, progress=False),
                             index=MemoryIndex())


async def test_index_errors_are_retried(tmp_path: Path, tiny_clip_dir: Path, clip) -> None:
    exp = make_generic(tmp_path / "src", n_good=4)
    s = settings_for(tmp_path, tiny_clip_dir)
    index = MemoryIndex(fail_next=2)
    report = await run_feed_async(s, request(exp.source, tmp_path), index=index, encoder=clip)
    assert report.indexed == len(exp.good) and index.attempts == index.upserts + 2
    assert set(index.docs) == set(exp.good)


async def test_index_down_aborts_then_rerun_feeds_from_shards(tmp_path: Path,
                                                              tiny_clip_dir: Path,
                                                              clip) -> None:
    exp = make_generic(tmp_path / "src", n_good=8)
    s = settings_for(tmp_path, tiny_clip_dir)
    down = MemoryIndex(fail_next=-1)
    report = await run_feed_async(s, request(exp.source, tmp_path, feed_batch_size=2,
                                             retries=1, max_failed_batches=2),
                                  index=down, encoder=clip)
    assert report.aborted and report.indexed == 0 and report.consistent
    assert report.skipped_by_reason["index_error"] == 4  # two batches of two
    assert report.skipped_by_reason["not_attempted"] == len(exp.good) - 4
    assert down.attempts == 4
    up = MemoryIndex()
    rerun = await run_feed_async(s, request(exp.source, tmp_path), index=up, encoder=clip)
    assert (rerun.indexed, rerun.encoded) == (len(exp.good), 0)
    assert set(up.docs) == set(exp.good)


async def test_dimension_mismatch_is_refused_before_writing(tmp_path: Path,
                                                            tiny_clip_dir: Path, clip) -> None:
    exp = make_generic(tmp_path / "src", n_good=2)
    s = settings_for(tmp_path, tiny_clip_dir)
    index = MemoryIndex(dim=256)
    with pytest.raises(InvalidRequest, match="512-d embeddings but the index stores 256-d"):
        await run_feed_async(s, request(exp.source, tmp_path), index=index, encoder=clip)
    assert index.attempts == 0 and not (s.data_dir / "embeddings").exists()


async def test_bytes_encoder_isolates_a_refused_image(tmp_path: Path) -> None:
    exp = make_generic(tmp_path / "src", n_good=4)
    refused = (tmp_path / "src/images/good_003.png").read_bytes()
    embedder = BytesEmbedder(refused)
    s = Settings(data_dir=tmp_path / "data", max_image_pixels=MAX_PIXELS)
    index = MemoryIndex()
    report = await run_feed_async(s, request(exp.source, tmp_path, batch_size=32), index=index,
                                  encoder=embedder)
    assert report.consistent and report.skipped_by_reason["invalid_image"] == 3
    assert set(index.docs) == set(exp.good) - {"gen:g3"}
    assert embedder.calls[0] == len(exp.good) and max(embedder.calls[1:]) == 1
