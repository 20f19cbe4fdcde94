"""``clipsearch feed --shard k/n`` (issue 17 item 10): the n shards are disjoint and their union
is the full feed (documents, embeddings, dead letters), from a source and from stored
embedding shards; the shard of an id is a stable sha1, not Python's salted hash."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from clipsearch.errors import InvalidRequest
from feeder.commands import FeedRequest, run_feed_async
from feeder.shards import Shard, shard_of
from tests.feeder_fixtures import (
    feed_request,
    make_generic,
    settings_for,
    stored_embeddings,
)

N = 3




def _dead(path: Path) -> Counter[tuple[str, str]]:
    return Counter((r["id"], r["reason"]) for r in
                   (json.loads(x) for x in path.read_text().splitlines()))


def test_shard_of_is_a_stable_sha1() -> None:
    key = "rsicd:airport_1"
    want = int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big") % 7
    assert shard_of(key, 7) == want
    assert shard_of("x", 1) == 0
    counts = Counter(shard_of(f"ds:img_{i}", N) for i in range(3000))
    assert set(counts) == set(range(N)) and min(counts.values()) > 900  # about even
    shards = [Shard.parse(f"{k}/{N}") for k in range(N)]
    assert all(sum(s.owns(f"id{i}") for s in shards) == 1 for i in range(200))
    assert str(Shard.parse(" 2/5 ")) == "2/5"
    for bad in ("3/3", "1/0", "a/b", "1/2/3", "-1/3"):
        with pytest.raises(ValueError):
            Shard.parse(bad)


def test_feed_request_validates_the_shard(tmp_path: Path) -> None:
    assert FeedRequest(source=tmp_path, shard="1/3").shard_spec() == Shard(index=1, count=3)
    with pytest.raises(ValidationError):
        FeedRequest(source=tmp_path, shard="3/3")
    with pytest.raises(ValidationError):
        FeedRequest(source=tmp_path, shard="all")


def test_prune_refuses_a_shard(tmp_path: Path) -> None:
    import argparse

    from feeder.commands import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["feed", str(tmp_path), "--shard", "0/2", "--prune"])
    with pytest.raises(InvalidRequest, match="without --shard"):
        args.func(args)


@pytest.mark.asyncio(loop_scope="session")
async def test_union_of_three_shards_is_the_full_feed(tmp_path: Path, tiny_clip_dir: Path,
                                                      clip) -> None:
    exp = make_generic(tmp_path / "src", n_good=5)  # ids in shards 1, 1, 0, 1, 2
    full_settings = settings_for(tmp_path / "full", tiny_clip_dir)
    full = await run_feed_async(full_settings, feed_request(exp.source, tmp_path / "full.jsonl"),
                                encoder=clip)
    assert full.indexed == len(exp.good)
    want = await stored_embeddings(full_settings, exp.good)

    sharded = settings_for(tmp_path / "sharded", tiny_clip_dir)
    indexed, dead = [], Counter[tuple[str, str]]()
    for k in range(N):
        report = await run_feed_async(
            sharded, feed_request(exp.source, tmp_path / f"dead{k}.jsonl", shard=f"{k}/{N}"),
            encoder=clip)
        assert not report.aborted
        indexed.append(report.indexed)
        dead += _dead(tmp_path / f"dead{k}.jsonl")
    assert sum(indexed) == len(exp.good) and all(n > 0 for n in indexed)  # disjoint, all used
    got = await stored_embeddings(sharded, exp.good)
    assert set(got) == set(want)
    for doc_id in want:
        assert np.allclose(got[doc_id], want[doc_id], atol=1e-6), doc_id
    assert dead == _dead(tmp_path / "full.jsonl")  # each bad row reported by one shard only

    # from the stored embeddings: shard 1 of 3 feeds exactly its ids, without a model
    only = settings_for(tmp_path / "from-shards", tiny_clip_dir)
    report = await run_feed_async(only, FeedRequest(
        from_embeddings=full_settings.data_dir / "embeddings", progress=False,
        dead_letter=tmp_path / "d.jsonl", shard=f"1/{N}"))
    mine = sorted(i for i in exp.good if shard_of(i, N) == 1)
    assert report.indexed == len(mine) == indexed[1]
    await stored_embeddings(only, mine)
