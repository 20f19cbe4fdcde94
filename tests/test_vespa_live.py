"""Opt-in checks against a REAL Vespa: set VESPA_URL (e.g. http://localhost:8080, after
`docker compose up -d`); optionally VESPA_CONFIG_URL to deploy first. Skipped otherwise.
The shared conformance suite runs against it in its own namespace.

VESPA_VECTOR_INDEX=binarized: the package (deployed with VESPA_CONFIG_URL, or already there)
is the binarised one (``clipsearch vespa package --vector-index binarized``): the whole module
runs with the client's binarised queries, plus ``TestLiveVespaBinarized``. Deploy it on a fresh
Vespa: switching an existing package between the two index kinds changes the embedding
field's attribute settings (a restart and a re-feed)."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from clipsearch.index.base import SearchIndex
from clipsearch.index.vespa.client import VespaIndex
from tests.index_conformance import IndexConformance, IndexFactory

VESPA_URL = os.environ.get("VESPA_URL", "")
BINARIZED = os.environ.get("VESPA_VECTOR_INDEX", "float") == "binarized"
NAMESPACE = "clipsearch-test"
CONTENT_CLUSTER = "clipsearch_content"  # pyvespa's name for the generated content cluster
pytestmark = [
    pytest.mark.live_vespa,
    pytest.mark.skipif(not VESPA_URL, reason="VESPA_URL is not set: no live Vespa to test "
                                             "against (loopback tests cover the client)"),
]


@pytest.fixture(scope="module", autouse=True)
def deployed(tmp_path_factory: pytest.TempPathFactory) -> None:
    config_url = os.environ.get("VESPA_CONFIG_URL")
    if not config_url:
        return
    from clipsearch.index.vespa import package
    from clipsearch.index.vespa.deploy import deploy

    app = Path(tmp_path_factory.mktemp("vespa-app"))
    dim = int(os.environ.get("VESPA_DIM", "16"))
    if BINARIZED:
        from clipsearch.index.vespa.binarized import BinarizedOptions
        from clipsearch.index.vespa.hosts import write

        write(app, package.render(dim, binarized=BinarizedOptions()))
    else:
        package.write(app, dim)
    deploy(app, config_url, VESPA_URL, wait_s=300)


def live_index(dim: int = 16) -> VespaIndex:
    """The client for the deployed package (binarised queries with VESPA_VECTOR_INDEX)."""
    from clipsearch.index.vespa.binarized import BinarizedQuery

    return VespaIndex(url=VESPA_URL, namespace=NAMESPACE, dim=dim,
                      binarized=BinarizedQuery() if BINARIZED else None)


async def wipe(namespace: str) -> None:
    """Remove every image document of the namespace (searches see all namespaces, so the
    suite's "fresh, empty index" means an empty document type)."""
    async with httpx.AsyncClient(base_url=VESPA_URL, timeout=60) as http:
        resp = await http.delete(f"/document/v1/{namespace}/image/docid",
                                 params={"selection": "true", "cluster": CONTENT_CLUSTER})
        assert resp.status_code == 200, resp.text


class TestLiveVespaConformance(IndexConformance):
    """Needs the package deployed with the suite's dimension (VESPA_DIM=16). Destroys every
    document in namespace ``clipsearch-test``: never point it at a cluster you care about."""

    @pytest.fixture(scope="class")
    def index_factory(self) -> IndexFactory:
        async def make(dim: int) -> SearchIndex:
            await wipe(NAMESPACE)
            return live_index(dim)

        return make


@pytest.mark.asyncio(loop_scope="session")
class TestLiveVespaIssue17:
    """Issue 17 against a real Vespa (deployed with VESPA_DIM=16): the captions' language, a
    constant leg in hybrid-linear, deep client-fused pages against the embedded engine.
    (Mixed-case ids are in the conformance suite above.) Wipes namespace clipsearch-test."""

    async def _index(self) -> VespaIndex:
        await wipe(NAMESPACE)
        return live_index()

    async def test_queries_are_stemmed_as_english(self) -> None:
        from clipsearch.search import Mode, SearchPlan
        from tests.index_conformance import CORPUS

        index = await self._index()
        try:
            await index.upsert(CORPUS)
            one = await index.search(SearchPlan(mode=Mode.lexical, text="harbor", limit=20))
            many = await index.search(SearchPlan(mode=Mode.lexical, text="harbors", limit=20))
        finally:
            await index.close()
        assert {h.id for h in one.hits} == {h.id for h in many.hits} != set()

    async def test_constant_lexical_leg_normalises_to_one_half(self) -> None:
        from clipsearch.fusion import min_max
        from clipsearch.search import Fusion, HybridParameters, Mode, SearchPlan
        from tests.index_conformance import CORPUS, unit_vector

        index = await self._index()
        try:
            await index.upsert(CORPUS)
            # no caption of the desert category says "harbor": BM25 is 0 for every hit
            result = await index.search(SearchPlan(
                mode=Mode.hybrid, text="harbor", vector=unit_vector(5), limit=10,
                filters={"category": ["desert", "farmland"]},
                hybrid=HybridParameters(fusion=Fusion.linear, alpha=0.6)))
        finally:
            await index.close()
        assert result.hits and all(h.scores.lexical == 0.0 for h in result.hits)
        import numpy as np

        vec = np.array([h.scores.vector or 0.0 for h in result.hits])
        want = 0.6 * min_max(vec) + 0.4 * 0.5
        assert [h.score for h in result.hits] == pytest.approx(want.tolist(), abs=1e-6)

    async def test_deep_client_fused_pages_equal_the_embedded_engine(
            self, tmp_path: Path) -> None:
        from clipsearch.errors import InvalidRequest
        from clipsearch.index.embedded import EmbeddedIndex
        from clipsearch.search import Fusion
        from tests.test_fusion_window import deep_corpus, hybrid_plan, query_vector

        docs, query = deep_corpus(16), query_vector(16)
        index = await self._index()
        embedded = EmbeddedIndex(tmp_path, dim=16)
        try:
            await index.upsert(docs)
            await embedded.upsert(docs)
            await embedded.flush()
            for offset in (0, 380):  # 380: the window takes three /search/ pages
                plan = hybrid_plan(Fusion.rrf_textbook, offset=offset, vector=query)
                got, want = await index.search(plan), await embedded.search(plan)
                assert [h.id for h in got.hits] == [h.id for h in want.hits]
            with pytest.raises(InvalidRequest, match="1400"):
                await index.search(hybrid_plan(Fusion.rrf, offset=900, vector=query))
        finally:
            await index.close()
            await embedded.close()


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.skipif(not BINARIZED, reason="VESPA_VECTOR_INDEX=binarized is not set (the "
                                          "deployed package is the float one)")
class TestLiveVespaBinarized:
    """Issue 17 item 9 against a real Vespa with the binarised package (VESPA_DIM=16): Vespa's
    ``binarize | pack_bits`` equals the client's ``pack_bits`` (first-phase relevance is
    ``1 / (1 + hamming)`` computed here in numpy), the bits field cannot be fed, and a few
    candidates still rank by the exact float closeness. Wipes namespace clipsearch-test."""

    async def test_indexing_packs_bits_like_the_client(self) -> None:
        import numpy as np

        from clipsearch.index.vespa import binarized as vbin
        from tests.index_conformance import CORPUS, unit_vector

        index = live_index()
        await wipe(NAMESPACE)
        q = unit_vector(77)
        try:
            await index.upsert(CORPUS)
            # rerankCount 0: no second phase, the relevance is the first phase's hamming
            # closeness over Vespa's own packed field
            resp = await index.request("POST", "/search/", json={
                "yql": "select id from image where {targetHits:100}"
                       "nearestNeighbor(embedding_bits, q_bits)",
                "ranking.profile": "vector", "ranking.rerankCount": 0, "hits": 100,
                "input.query(q_bits)": vbin.pack_bits(q), "input.query(q)": q})
            assert resp.status_code == 200, resp.text
            got = {c["fields"]["id"]: c["relevance"] for c in resp.json()["root"]["children"]}
            bad = await index.request("POST", "/document/v1/clipsearch-test/image/docid/x",
                                      json={"fields": {"id": "x", "embedding_bits": [0, 0]}})
        finally:
            await index.close()
        q_bits = np.packbits(np.asarray(q) > 0)
        want = {d.id: 1 / (1 + int(np.unpackbits(np.bitwise_xor(
            np.packbits(np.asarray(d.embedding) > 0), q_bits)).sum())) for d in CORPUS}
        assert got == pytest.approx(want, abs=1e-9)
        assert bad.status_code == 400  # a synthetic field is not a document field

    async def test_few_candidates_rank_by_float_closeness(self) -> None:
        from clipsearch.index.vespa.binarized import BinarizedQuery
        from clipsearch.search import Mode, SearchPlan
        from tests.index_conformance import BY_ID, CORPUS, exact_closeness, unit_vector

        await wipe(NAMESPACE)
        index = VespaIndex(url=VESPA_URL, namespace=NAMESPACE, dim=16,
                           binarized=BinarizedQuery(candidates=5))
        q = unit_vector(78)
        try:
            await index.upsert(CORPUS)
            result = await index.search(SearchPlan(mode=Mode.vector, vector=q, limit=5,
                                                   candidates=5))
        finally:
            await index.close()
        assert len(result.hits) == 5
        scores = [exact_closeness(q, BY_ID[h.id]) for h in result.hits]
        assert [h.score for h in result.hits] == pytest.approx(scores, abs=1e-4)
        assert scores == sorted(scores, reverse=True)
