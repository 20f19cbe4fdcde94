"""Re-indexing into a new generation with another model; resume after a kill; the CLI for
generations, activate (incl. a half-built one), rollback and drop; feeding another space."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import CLIPModel

from clipsearch.cli import main
from clipsearch.embeddings import Embeddings
from clipsearch.index import open_index
from clipsearch.index.base import GenerationalIndex
from clipsearch.index.generations import EmbeddingSpaceMismatch, GenerationState
from clipsearch.models.model import ClipEncoder
from clipsearch.search import Mode, SearchPlan
from clipsearch.settings import Settings
from feeder.commands import FeedRequest, run_feed_async
from feeder.reindex import ReindexRequest, run_reindex_async

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def model_b(tiny_clip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny CLIP with perturbed projections: another embedding space, same dimension."""
    out = tmp_path_factory.mktemp("model-b") / "model"
    model = CLIPModel.from_pretrained(tiny_clip_dir)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(7)
        model.visual_projection.weight.add_(
            torch.randn(model.visual_projection.weight.shape, generator=gen) * 0.5)
    model.save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json",
                 "special_tokens_map.json", "vocab.json", "merges.txt"):
        if (tiny_clip_dir / name).exists():
            (out / name).write_bytes((tiny_clip_dir / name).read_bytes())
    return out


@pytest.fixture(scope="module")
def clip_a(tiny_clip_dir: Path) -> ClipEncoder:
    return ClipEncoder.load(str(tiny_clip_dir), threads=1, runtime="torch")


@pytest.fixture(scope="module")
def clip_b(model_b: Path) -> ClipEncoder:
    return ClipEncoder.load(str(model_b), threads=1, runtime="torch")


class Dying:
    """``clip_b`` that dies (like a killed process) after ``calls`` image batches."""

    def __init__(self, inner: ClipEncoder, calls: int) -> None:
        self._inner, self._left = inner, calls
        self.model_id, self.dim = inner.model_id, inner.dim
        self.preprocess_spec, self.space_id = inner.preprocess_spec, inner.space_id

    def embed_pixels(self, batch: np.ndarray) -> Embeddings:
        if self._left <= 0:
            raise KeyboardInterrupt("killed")
        self._left -= 1
        return self._inner.embed_pixels(batch)


async def cli(argv: list[str]) -> int:
    return await asyncio.to_thread(main, argv)  # the CLI runs its own event loop


async def _orphan_writes() -> None:
    """Let the index write that was in flight when the feed was 'killed' settle (a real
    kill ends it with the process)."""
    orphans = [t for t in asyncio.all_tasks() if "IndexWriter._write" in repr(t.get_coro())]
    if orphans:
        await asyncio.wait(orphans, timeout=10)


def _settings(tmp: Path, model: Path) -> Settings:
    return Settings(data_dir=tmp / "data", model=str(model))


async def _fed(tmp: Path, tiny_clip_dir: Path, sample_dataset: Any, clip_a: ClipEncoder) -> int:
    report = await run_feed_async(
        _settings(tmp, tiny_clip_dir),
        FeedRequest(source=sample_dataset.manifest, progress=False, dead_letter=tmp / "d.jsonl"),
        encoder=clip_a)
    assert report.indexed > 0
    return report.indexed


async def _index(tmp: Path, model: Path) -> GenerationalIndex:
    index = open_index(_settings(tmp, model))
    assert isinstance(index, GenerationalIndex)
    return index


async def test_reindex_builds_beside_the_live_generation_and_resumes(
        tmp_path: Path, tiny_clip_dir: Path, model_b: Path, sample_dataset: Any,
        clip_a: ClipEncoder, clip_b: ClipEncoder, monkeypatch: pytest.MonkeyPatch) -> None:
    n = await _fed(tmp_path, tiny_clip_dir, sample_dataset, clip_a)
    settings = _settings(tmp_path, tiny_clip_dir)
    monkeypatch.setenv("CLIPSEARCH_FEED_SHARD_DOCS", "4")  # reindex honours CLIPSEARCH_FEED_*
    monkeypatch.setenv("CLIPSEARCH_FEED_FEED_BATCH_SIZE", "4")
    monkeypatch.setenv("CLIPSEARCH_FEED_RETRIES", "0")
    req = ReindexRequest(model=str(model_b), progress=False, batch_size=4)
    with pytest.raises(KeyboardInterrupt):
        await run_reindex_async(settings, req, encoder=Dying(clip_b, calls=2))  # type: ignore[arg-type]
    await _orphan_writes()
    index = await _index(tmp_path, tiny_clip_dir)
    half = await index.generation("g1")
    assert half.state == GenerationState.building and half.expected == n
    assert half.documents is not None and 0 < half.documents < n
    assert (await index.active_generation()).name == "g0" and await index.count() == n
    await index.close()

    report = await run_reindex_async(settings, req, encoder=clip_b)
    assert report.resumed and report.generation.name == "g1"
    assert report.generation.state == GenerationState.complete
    feed = report.feed
    assert feed.already_indexed == half.documents  # written before the kill: skipped
    # what the killed run encoded is reused from its shards (or was written already)
    assert feed.encoded <= n - half.documents - feed.reused_embeddings
    assert feed.encoded + feed.reused_embeddings + feed.already_indexed == n
    assert report.generation.space == clip_b.space_id != clip_a.space_id

    index = await _index(tmp_path, tiny_clip_dir)
    g1 = index.at_generation("g1")
    assert await g1.count() == n
    some = (await index.scan_fields("g0", limit=1))[0]
    a, b = await index.get(some.id), await g1.get(some.id)
    assert a is not None and b is not None and a.captions == b.captions
    assert b.model_id == clip_b.model_id and not np.allclose(a.embedding, b.embedding)
    # searches of the live generation were never touched
    hits = await index.search(SearchPlan(mode=Mode.vector, vector=a.embedding, limit=1))
    assert hits.hits[0].id == a.id and hits.hits[0].document.model_id == clip_a.model_id
    await index.close()


async def test_feeding_another_space_into_a_generation_writes_nothing(
        tmp_path: Path, tiny_clip_dir: Path, sample_dataset: Any, clip_a: ClipEncoder,
        clip_b: ClipEncoder) -> None:
    n = await _fed(tmp_path, tiny_clip_dir, sample_dataset, clip_a)
    with pytest.raises(EmbeddingSpaceMismatch, match="reindex"):
        await run_feed_async(_settings(tmp_path, tiny_clip_dir),
                             FeedRequest(source=sample_dataset.manifest, progress=False,
                                         reencode=True, dead_letter=tmp_path / "d2.jsonl"),
                             encoder=clip_b)
    index = await _index(tmp_path, tiny_clip_dir)
    docs = await index.scan_fields("g0")
    assert len(docs) == n and {d.model_id for d in docs} == {clip_a.model_id}
    await index.close()


async def test_cli_list_activate_rollback_drop(
        tmp_path: Path, tiny_clip_dir: Path, model_b: Path, sample_dataset: Any,
        clip_a: ClipEncoder, clip_b: ClipEncoder, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    await _fed(tmp_path, tiny_clip_dir, sample_dataset, clip_a)
    settings = _settings(tmp_path, tiny_clip_dir)
    await run_reindex_async(settings, ReindexRequest(model=str(model_b), progress=False),
                            encoder=clip_b)
    index = await _index(tmp_path, tiny_clip_dir)
    await index.create_generation(model_id="x", space=None, dim=512, name="half", expected=9)
    await index.close()
    monkeypatch.setenv("CLIPSEARCH_DATA_DIR", str(tmp_path / "data"))
    capsys.readouterr()
    assert await cli(["generations"]) == 0
    table = capsys.readouterr().out
    assert "* " in table.splitlines()[1] and "g0" in table.splitlines()[1]
    assert "g1" in table and "building" in table and "0 of 9" in table
    assert await cli(["activate", "half"]) == 1
    assert "still being built (0 of 9 documents (0%))" in capsys.readouterr().err
    assert await cli(["activate", "g1"]) == 0
    assert await cli(["drop", "g1"]) == 1
    assert "is active" in capsys.readouterr().err
    assert await cli(["activate", "g0"]) == 0  # rollback
    assert await cli(["drop", "g1"]) == 0 and await cli(["drop", "nope"]) == 1
    assert await cli(["generations", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"g1"' not in out and '"half"' in out


async def test_reindex_on_vespa_resumes_and_the_cli_switches(
        tmp_path: Path, tiny_clip_dir: Path, model_b: Path, sample_dataset: Any,
        clip_a: ClipEncoder, clip_b: ClipEncoder, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The same on Vespa (the loopback stand-in, not a live Vespa): g1 is the field
    embedding_g1, deployed as a live schema change and filled by partial updates."""
    from tests.vespa_loopback import LoopbackVespa

    with LoopbackVespa(dim=clip_a.dim) as vespa:
        env = {"CLIPSEARCH_BACKEND": "vespa", "CLIPSEARCH_VESPA_URL": vespa.url,
               "CLIPSEARCH_VESPA_CONFIG_URL": vespa.url, "CLIPSEARCH_VESPA_CATALOG_TTL_S": "0",
               "CLIPSEARCH_VESPA_DEPLOY_GENERATIONS": "true",
               "CLIPSEARCH_EMBEDDING_DIM": str(clip_a.dim), "CLIPSEARCH_FEED_SHARD_DOCS": "4",
               "CLIPSEARCH_FEED_FEED_BATCH_SIZE": "4", "CLIPSEARCH_FEED_RETRIES": "0",
               "CLIPSEARCH_DATA_DIR": str(tmp_path / "data")}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = Settings(model=str(tiny_clip_dir))
        n = (await run_feed_async(settings, FeedRequest(
            source=sample_dataset.manifest, progress=False, dead_letter=tmp_path / "d.jsonl"),
            encoder=clip_a)).indexed
        req = ReindexRequest(model=str(model_b), progress=False, batch_size=4)
        with pytest.raises(KeyboardInterrupt):
            await run_reindex_async(settings, req, encoder=Dying(clip_b, calls=2))  # type: ignore[arg-type]
        await _orphan_writes()
        index = open_index(settings)
        assert isinstance(index, GenerationalIndex)
        half = await index.generation("g1")
        assert half.state == GenerationState.building and 0 < (half.documents or 0) < n
        assert half.table == "embedding_g1" and "embedding_g1" in vespa.state.schema.fields
        capsys.readouterr()
        assert await cli(["drop", "g1"]) == 1  # a reindex may be filling it: needs --force
        assert "still being built" in capsys.readouterr().err
        report = await run_reindex_async(settings, req, encoder=clip_b)
        assert report.resumed and report.generation.state == GenerationState.complete
        # Vespa acknowledges each document's update on its own: a killed batch may have
        # written part of its documents before the ledger vouched for them; they are
        # written again (an idempotent assign), never twice counted or lost
        feed = report.feed
        assert feed.already_indexed <= (half.documents or 0)
        assert feed.encoded + feed.reused_embeddings + feed.already_indexed == n
        assert (await index.generation("g1")).documents == n
        some = (await index.scan_fields("g0", limit=1))[0]
        a, b = await index.get(some.id), await index.at_generation("g1").get(some.id)
        assert a is not None and b is not None and a.captions == b.captions
        assert b.model_id == clip_b.model_id and not np.allclose(a.embedding, b.embedding)
        assert len(vespa.docs) == n  # partial updates: no document added or lost
        await index.close()
        capsys.readouterr()
        assert await cli(["generations"]) == 0
        table = capsys.readouterr().out
        assert "g1" in table and "complete" in table and "* " in table.splitlines()[1]
        assert await cli(["activate", "g1"]) == 0 and await cli(["drop", "g1"]) == 1
        assert await cli(["activate", "g0"]) == 0 and await cli(["drop", "g1"]) == 0
        assert all("embedding_g1" not in d for d in vespa.docs.values())
        assert vespa.violations == []
