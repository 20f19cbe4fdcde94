"""Deep hybrid pages fused by the client (issue 17 item 3): the Vespa client fetches the
whole rerank window in pages of maxHits (offsets within maxOffset) and pages like the
embedded engine; beyond 1,400 hits both engines refuse with the same 422."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from clipsearch.documents import ImageDocument
from clipsearch.embeddings import l2_normalize
from clipsearch.errors import InvalidRequest
from clipsearch.index.base import SearchIndex
from clipsearch.index.embedded import EmbeddedIndex
from clipsearch.index.fusion_window import (
    MAX_CLIENT_FUSED_HITS,
    FusionWindowTooDeep,
    check_fusion_window,
    fused_by_client,
)
from clipsearch.index.vespa.client import RetryPolicy, VespaIndex
from clipsearch.index.vespa.docs import to_fields
from clipsearch.search import Fusion, HybridParameters, Mode, SearchPlan
from tests.vespa_loopback import LoopbackVespa

DIM = 8
N_DOCS = 500
WORDS = ["harbor", "river", "forest", "desert", "bridge", "field", "road", "lake", "roof"]
FILLER = ["small", "large", "old", "new", "busy"]


def deep_corpus(dim: int = DIM) -> list[ImageDocument]:
    """500 documents; "harbor" in 56 captions (fewer than any window)."""
    rng = np.random.default_rng(17)
    vectors = l2_normalize(rng.normal(size=(N_DOCS, dim)))
    docs = []
    for i in range(N_DOCS):
        # 1 in 9 captions says "harbor" (56 lexical matches: fewer than any window, so both
        # engines fuse the same hits), 1 in 27 twice
        words = [WORDS[i % 9], FILLER[(i // 9) % 5]] + (["harbor"] if i % 27 == 0 else [])
        docs.append(ImageDocument(id=f"d:{i:04d}", captions=[" ".join(words)], dataset="d",
                                  image_uri="", model_id="m",
                                  embedding=[float(x) for x in vectors[i]]))
    return docs


def query_vector(dim: int = DIM) -> list[float]:
    return [float(x) for x in l2_normalize(np.random.default_rng(3).normal(size=dim))[0]]


CORPUS = deep_corpus()
QUERY = query_vector()


@pytest.fixture(scope="module")
async def engines(tmp_path_factory: pytest.TempPathFactory
                  ) -> AsyncIterator[tuple[SearchIndex, SearchIndex, LoopbackVespa]]:
    with LoopbackVespa(dim=DIM) as server:
        vespa = VespaIndex(url=server.url, namespace="clipsearch", dim=DIM, concurrency=32,
                           retry=RetryPolicy(attempts=2, initial_s=0.01, max_s=0.02))
        embedded = EmbeddedIndex(Path(tmp_path_factory.mktemp("embedded")), dim=DIM)
        await embedded.ensure_ready()
        for doc in CORPUS:  # stored directly: 500 loopback puts take seconds on 2 busy cores
            server.docs[f"clipsearch/{doc.id}"] = {**to_fields(doc, doc.embedding),
                                                   "embedding": list(doc.embedding)}
        await embedded.upsert(CORPUS)
        await embedded.flush()
        try:
            yield vespa, embedded, server
        finally:
            await vespa.close()
            await embedded.close()
        assert server.violations == [], server.violations


def hybrid_plan(fusion: Fusion, *, offset: int, limit: int = 50, candidates: int = 100,
                rrf_k: int = 30, vector: list[float] | None = None) -> SearchPlan:
    return SearchPlan(mode=Mode.hybrid, text="harbor", vector=vector or QUERY, offset=offset,
                      limit=limit, candidates=candidates,
                      hybrid=HybridParameters(fusion=fusion, rrf_k=rrf_k))


def test_which_plans_are_client_fused() -> None:
    assert fused_by_client(hybrid_plan(Fusion.rrf_textbook, offset=0))
    assert fused_by_client(hybrid_plan(Fusion.rrf, offset=0, rrf_k=30))
    assert not fused_by_client(hybrid_plan(Fusion.rrf, offset=0, rrf_k=60))
    assert not fused_by_client(hybrid_plan(Fusion.linear, offset=900))
    check_fusion_window(hybrid_plan(Fusion.rrf, offset=650, limit=50))  # 2 x 700 = the limit
    with pytest.raises(FusionWindowTooDeep, match="700 per leg"):
        check_fusion_window(hybrid_plan(Fusion.rrf, offset=651, limit=50))


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("fusion", [Fusion.rrf, Fusion.rrf_textbook])
@pytest.mark.parametrize("offset", [0, 380])
async def test_deep_pages_equal_the_embedded_engine(
        engines: tuple[SearchIndex, SearchIndex, LoopbackVespa], fusion: Fusion,
        offset: int) -> None:
    vespa, embedded, server = engines
    plan = hybrid_plan(fusion, offset=offset)
    before = len(server.searches())
    got = await vespa.search(plan)
    want = await embedded.search(plan)
    bodies = server.searches()[before:]
    assert len(got.hits) == len(want.hits) == plan.limit
    assert [h.id for h in got.hits] == [h.id for h in want.hits]
    for a, b in zip(got.hits, want.hits, strict=True):
        assert a.score == pytest.approx(b.score, rel=1e-6)
    pages = [(b["offset"], b["hits"]) for b in bodies]
    assert all(o <= 1000 and h <= 400 for o, h in pages), pages
    assert pages[0] == (0, min(400, 2 * plan.window))
    if 2 * plan.window > 400:  # the window took more than one page
        assert len(pages) > 1 and pages[1][0] == 400


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("fusion", [Fusion.rrf, Fusion.rrf_textbook])
async def test_too_deep_is_refused_alike(
        engines: tuple[SearchIndex, SearchIndex, LoopbackVespa], fusion: Fusion) -> None:
    vespa, embedded, server = engines
    before = len(server.searches())
    for index in (vespa, embedded):
        with pytest.raises(InvalidRequest, match=str(MAX_CLIENT_FUSED_HITS)) as info:
            await index.search(hybrid_plan(fusion, offset=900, limit=50))
        assert info.value.reason == "fusion_window_too_deep"
        with pytest.raises(InvalidRequest):
            await index.search(hybrid_plan(fusion, offset=0, candidates=800))
    assert len(server.searches()) == before  # refused before asking Vespa


@pytest.mark.asyncio(loop_scope="session")
async def test_server_fused_deep_page_is_one_request(
        engines: tuple[SearchIndex, SearchIndex, LoopbackVespa]) -> None:
    vespa, _, server = engines
    before = len(server.searches())
    result = await vespa.search(hybrid_plan(Fusion.rrf, offset=450, limit=50, rrf_k=60))
    bodies = server.searches()[before:]
    assert [(b["offset"], b["hits"]) for b in bodies] == [(450, 50)]
    assert len(result.hits) == 50
