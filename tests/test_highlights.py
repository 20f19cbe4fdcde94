"""Caption highlights: analysed like the embedded full-text index, offsets into the caption,
served per hit by the API."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from clipsearch.documents import ImageDocument
from clipsearch.highlights import Analyzer, highlight
from clipsearch.index import open_index
from clipsearch.search import Mode, SearchPlan
from clipsearch.settings import Settings
from services.api.app import create_app
from tests.api_fakes import FakeEmbedder, RecordingIndex, unit

WORDS = ["harbor", "harbors", "Harbour", "boats", "boat", "boating", "running", "runs", "ran",
         "bridge", "bridges", "café", "CAFE", "the", "a", "of", "green", "greener", "trees",
         "tree", "river", "rivers", "quickly", "quick", "buildings", "built", "x_y"]


def spans_text(caption: str, hl: list[tuple[int, int]]) -> list[str]:
    return [caption[s:e] for s, e in hl]


def test_spans_are_offsets_of_stemmed_matches() -> None:
    a = Analyzer()
    captions = ["Many BOATS in the harbor.", "a bridge", "🚤 boating near harbors"]
    out = highlight(a, "harbors with boats", captions)
    assert [h.caption for h in out] == [0, 2]
    assert spans_text(captions[0], out[0].spans) == ["BOATS", "harbor"]
    # code-point offsets: the emoji before counts as one character
    assert spans_text(captions[2], out[1].spans) == ["boating", "harbors"]
    assert out[1].spans[0] == (2, 9)


def test_folding_stop_words_and_unmatched_queries() -> None:
    a = Analyzer()
    assert spans_text("Le Café", highlight(a, "cafe", ["Le Café"])[0].spans) == ["Café"]
    assert highlight(a, "the", ["the river"])[0].spans == [(0, 3)]  # stop words are kept
    assert highlight(a, "zeppelin", ["the river"]) == []
    assert highlight(a, "", ["the river"]) == [] and highlight(a, None, ["x"]) == []
    assert highlight(a, "a" * 41, ["a" * 41]) == []  # over-long tokens are not indexed


def test_highlighted_exactly_where_the_index_matches(tmp_path: Path) -> None:
    """A caption gets a highlight iff the embedded FTS index matches the query in it."""
    rng = random.Random(7)
    captions = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6))) for _ in range(60)]
    docs = [ImageDocument(id=f"t:{i}", captions=[c], dataset="t", model_id="m",
                          embedding=unit(i, 8)) for i, c in enumerate(captions)]
    queries = ["harbor", "boats running", "Bridges", "cafe", "greenest tree", "built", "x",
               "quickly rivers"]

    async def matched() -> dict[str, set[str]]:
        index = open_index(Settings(data_dir=tmp_path, embedding_dim=8))
        await index.ensure_ready()
        await index.upsert(docs)
        await index.flush()
        try:
            out = {}
            for q in queries:
                r = await index.search(SearchPlan(mode=Mode.lexical, text=q, limit=100))
                out[q] = {h.id for h in r.hits}
            return out
        finally:
            await index.close()

    by_index = asyncio.run(matched())
    a = Analyzer()
    for q in queries:
        by_highlight = {d.id for d in docs if highlight(a, q, d.captions)}
        assert by_highlight == by_index[q], q
    assert any(by_index.values())


@pytest.mark.parametrize("mode", ["lexical", "hybrid", "vector"])
def test_api_hits_carry_highlights(tmp_path: Path, mode: str) -> None:
    docs = [ImageDocument(id="t:1", captions=["a <b>harbor</b> & boats", "empty"], dataset="t",
                          model_id="m", embedding=unit(1))]
    app = create_app(Settings(data_dir=tmp_path), index=RecordingIndex(docs),
                     embedder=FakeEmbedder())
    with TestClient(app) as c:
        hit = c.get("/search", params={"q": "boat harbors", "mode": mode}).json()["hits"][0]
    cap = docs[0].captions[0]
    assert hit["highlights"] == [{"caption": 0, "spans": [[5, 11], [18, 23]]}]
    assert [cap[s:e] for s, e in hit["highlights"][0]["spans"]] == ["harbor", "boats"]
