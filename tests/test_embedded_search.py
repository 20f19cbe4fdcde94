"""The embedded engine's search internals: tie order by id, and searches racing writes.

The legs return row ids, and the page's fields are read by row id in a later call; these
tests pin down that ties are still ordered by id on every page and that a write retiring row
ids between those calls (compaction, delete) gives a correct answer, not a wrong row.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import clipsearch.index.embedded_search as engine
from clipsearch.documents import ImageDocument
from clipsearch.index.embedded import EmbeddedIndex
from clipsearch.search import Mode
from tests.index_conformance import DIM, ids, plan, unit_vector

SAME = unit_vector(5)


def _docs(n: int) -> list[ImageDocument]:
    """Identical captions and embeddings: every leg score ties, only ids tell them apart.
    Written in a shuffled order so that row order is not id order."""
    order = np.random.default_rng(3).permutation(n)
    return [ImageDocument(id=f"tie:{i:03d}", captions=["a harbor with boats"], dataset="t",
                          category="c", split="train", embedding=SAME) for i in order]


@pytest.fixture
async def ties(tmp_path: Path) -> Any:
    index = EmbeddedIndex(tmp_path / "ties", dim=DIM)
    await index.upsert(_docs(30))
    await index.flush()
    yield index
    await index.close()


@pytest.mark.parametrize("mode", [Mode.lexical, Mode.vector, Mode.hybrid])
async def test_ties_are_ordered_by_id_on_every_page(ties: EmbeddedIndex, mode: Mode) -> None:
    pages = []
    for offset in range(0, 30, 7):
        query = plan(mode, text="harbor", vector=SAME if mode != Mode.lexical else None,
                     limit=7, offset=offset)
        pages += ids(await ties.search(query))
    assert pages == sorted(f"tie:{i:03d}" for i in range(30))


@pytest.mark.parametrize(
    ("scores", "start", "stop", "widened"),
    [
        ([3.0, 2.0, 1.0], 0, 2, (0, 2)),
        ([3.0, 2.0, 2.0, 2.0, 1.0], 0, 2, (0, 4)),
        ([2.0, 2.0, 2.0, 2.0], 1, 3, (0, 4)),
        ([5.0, 4.0, 4.0, 3.0, 3.0, 1.0], 2, 4, (1, 5)),
        ([1.0], 0, 1, (0, 1)),
    ],
)
def test_tie_widened(scores: list[float], start: int, stop: int,
                     widened: tuple[int, int]) -> None:
    assert engine.tie_widened(scores, start, stop) == widened


def _racing_page_hits(
    write: Callable[[], Awaitable[None]], times: int, calls: dict[str, int]
) -> Callable[..., Awaitable[list[Any]]]:
    """``page_hits`` that lets a real write commit right before the first ``times`` calls
    (counted in ``calls["n"]``)."""
    original = engine.page_hits

    async def page_hits(*args: Any, **kwargs: Any) -> list[Any]:
        calls["n"] += 1
        if calls["n"] <= times:
            await write()
        return await original(*args, **kwargs)

    return page_hits


def _corpus() -> list[ImageDocument]:
    words = ["harbor", "river", "forest", "road"]
    return [ImageDocument(id=f"r:{i:02d}", captions=[f"a {words[i % 4]} seen from above {i}"],
                          dataset="t", category=words[i % 4], split="train",
                          embedding=unit_vector(100 + i)) for i in range(24)]


@pytest.mark.parametrize("mode", [Mode.lexical, Mode.vector, Mode.hybrid])
async def test_search_racing_a_compaction_retries_on_the_new_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: Mode
) -> None:
    index = EmbeddedIndex(tmp_path / "race", dim=DIM)
    corpus = _corpus()
    await index.upsert(corpus[:12])
    await index.upsert(corpus[12:])  # two fragments, so compaction rewrites row ids
    query = plan(mode, text="harbor river", vector=corpus[4].embedding if mode != Mode.lexical
                 else None, limit=5)
    expected = await index.search(query)

    async def delete_one_and_compact() -> None:
        await index.delete(["r:23"])
        await index.flush()

    calls = {"n": 0}
    monkeypatch.setattr(engine, "page_hits", _racing_page_hits(delete_one_and_compact, 1, calls))
    got = await index.search(query)
    assert calls["n"] == 2  # the first attempt's row ids were retired: it ran again
    assert ids(got) == [i for i in ids(expected) if i != "r:23"][: len(ids(got))]
    for hit in got.hits:  # every hit's fields are its own, not another row's
        assert hit.document.id == hit.id
        assert hit.document.captions == next(d.captions for d in corpus if d.id == hit.id)
    await index.close()


async def test_last_attempt_keeps_what_it_got(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A table rewritten under every attempt still answers (with the rows it could read)."""
    index = EmbeddedIndex(tmp_path / "churn", dim=DIM)
    corpus = _corpus()
    await index.upsert(corpus)

    async def compact_again() -> None:
        await index.upsert(corpus[:1])  # a replaced row: new version, new row id
        await index.flush()

    calls = {"n": 0}
    monkeypatch.setattr(engine, "page_hits",
                        _racing_page_hits(compact_again, engine.ATTEMPTS, calls))
    got = await index.search(plan(Mode.hybrid, text="harbor", vector=corpus[0].embedding,
                                  limit=10))
    assert calls["n"] == engine.ATTEMPTS
    assert len(got.hits) <= 10
    assert all(h.document.id == h.id for h in got.hits)
    await index.close()


async def test_summary_round_trips_awkward_captions(tmp_path: Path) -> None:
    index = EmbeddedIndex(tmp_path / "summary", dim=DIM)
    captions = ['a "quoted" harbor', "über café 東京 harbor", "back\\slash harbor\nnewline"]
    doc = ImageDocument(id="s:1", captions=captions, dataset="t", category="c", split=None,
                        image_uri="/x/it's.jpg", model_id="m", embedding=unit_vector(1))
    await index.upsert([doc])
    hit = (await index.search(plan(Mode.lexical, text="harbor"))).hits[0]
    assert hit.document.model_dump() == doc.model_dump(exclude={"embedding"})
    await index.close()


async def test_table_without_summary_column_still_serves_and_takes_writes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An index created before the summary column existed is read column by column."""
    import lancedb

    from clipsearch.index.embedded_schema import SUMMARY, table_schema

    conn = await lancedb.connect_async(str(tmp_path / "old"))
    await conn.create_table("images", schema=table_schema(DIM, summary=False))
    conn.close()
    index = EmbeddedIndex(tmp_path / "old", dim=DIM)
    corpus = _corpus()
    with caplog.at_level("WARNING"):
        await index.upsert(corpus)
    assert "predates the summary column" in caplog.text
    for mode in (Mode.lexical, Mode.vector, Mode.hybrid):
        result = await index.search(plan(mode, text="harbor", vector=corpus[0].embedding
                                         if mode != Mode.lexical else None, limit=5))
        assert result.hits and all(h.document.id == h.id for h in result.hits)
        assert all(h.document.captions for h in result.hits)
    table = await (await lancedb.connect_async(str(tmp_path / "old"))).open_table("images")
    assert SUMMARY not in (await table.schema()).names
    await index.close()
