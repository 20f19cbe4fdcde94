"""``feed --prune`` and caption-only changes: the index follows its source."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from clipsearch.cli import main
from clipsearch.index import open_index
from clipsearch.index.base import GenerationalIndex
from clipsearch.models.model import ClipEncoder
from clipsearch.settings import Settings
from feeder.commands import FeedRequest, run_feed_async
from feeder.prune import PruneRefused, prune

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _rows(sample_dataset: Any) -> list[dict[str, Any]]:
    base = sample_dataset.manifest.parent
    rows = [json.loads(x) for x in sample_dataset.manifest.read_text().splitlines() if x]
    for r in rows:
        r["file"] = str((base / r["file"]).resolve())
    return rows


def _manifest(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _req(source: Path, tmp: Path, **kw: Any) -> FeedRequest:
    return FeedRequest(source=source, progress=False, dead_letter=tmp / "dead.jsonl", **kw)


async def _index(settings: Settings) -> GenerationalIndex:
    index = open_index(settings)
    assert isinstance(index, GenerationalIndex)
    return index


async def test_caption_change_is_not_reencoded_and_prune_removes_unlisted(
        tmp_path: Path, tiny_clip_dir: Path, sample_dataset: Any, clip: ClipEncoder) -> None:
    settings = Settings(data_dir=tmp_path / "data", model=str(tiny_clip_dir))
    rows = _rows(sample_dataset)
    first = await run_feed_async(settings, _req(_manifest(tmp_path / "v1.jsonl", rows),
                                                tmp_path), encoder=clip)
    n = first.indexed
    index = await _index(settings)
    some = (await index.scan_fields("g0", limit=1))[0]
    g1 = await index.create_generation(model_id=clip.model_id, space=None, dim=clip.dim)
    await index.at_generation(g1.name).upsert([d for d in [await index.get(some.id)] if d])
    await index.close()

    changed = [dict(r) for r in rows[2:]]
    changed[0]["captions"] = ["an entirely new caption about lighthouses"]
    v2 = _manifest(tmp_path / "v2.jsonl", changed)
    second = await run_feed_async(settings, _req(v2, tmp_path), encoder=clip)
    assert second.encoded == 0 and second.reused_embeddings == 1  # captions only: no encoding
    assert second.already_indexed == len(changed) - 1

    index = await _index(settings)
    removed_ids = {d.id for d in await index.scan_fields("g0")
                   if d.id.split(":", 1)[1] in {rows[0]["id"], rows[1]["id"]}}
    assert len(removed_ids) == 2
    report = await prune(index, _req(v2, tmp_path))
    assert report.removed["g0"] == 2 and report.stored == n
    assert await index.count() == n - 2
    assert not (await index.existing_ids(sorted(removed_ids)))
    if some.id in removed_ids:  # every generation is pruned
        assert await index.at_generation(g1.name).count() == 0
    updated = [d for d in await index.scan_fields("g0") if "lighthouses" in " ".join(d.captions)]
    assert len(updated) == 1
    again = await prune(index, _req(v2, tmp_path))
    assert sum(again.removed.values()) == 0
    await index.close()


async def test_prune_refuses_more_than_half_and_limit(
        tmp_path: Path, tiny_clip_dir: Path, sample_dataset: Any, clip: ClipEncoder,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(data_dir=tmp_path / "data", model=str(tiny_clip_dir))
    rows = _rows(sample_dataset)
    full = _manifest(tmp_path / "full.jsonl", rows)
    n = (await run_feed_async(settings, _req(full, tmp_path), encoder=clip)).indexed
    few = _manifest(tmp_path / "few.jsonl", rows[:3])
    index = await _index(settings)
    with pytest.raises(PruneRefused, match=f"{n - 3} of {n} documents"):
        await prune(index, _req(few, tmp_path))
    assert await index.count() == n
    with pytest.raises(Exception, match="--limit"):
        await prune(index, _req(full, tmp_path, limit=2))
    await index.close()
    # the CLI: refused without --force (exit 1, nothing removed), done with it
    monkeypatch.setenv("CLIPSEARCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CLIPSEARCH_MODEL", str(tiny_clip_dir))
    monkeypatch.setenv("CLIPSEARCH_FEED_WORKERS", "0")
    argv = ["feed", str(few), "--no-progress", "--prune", "--dead-letter",
            str(tmp_path / "d.jsonl")]
    assert await asyncio.to_thread(main, argv) == 1
    assert "refusing to remove" in capsys.readouterr().err
    index = await _index(settings)
    assert await index.count() == n
    report = await prune(index, _req(few, tmp_path), force=True)
    assert report.removed == {"g0": n - 3} and f"removed {n - 3}" in report.summary()
    assert await index.count() == 3
    await index.close()
