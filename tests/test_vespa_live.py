"""Opt-in checks against a REAL Vespa: set VESPA_URL (e.g. http://localhost:8080, after
`docker compose up -d`); optionally VESPA_CONFIG_URL to deploy first. Skipped otherwise.
The shared conformance suite runs against it in its own namespace."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from clipsearch.index.base import SearchIndex
from clipsearch.index.vespa.client import VespaIndex
from tests.index_conformance import IndexConformance, IndexFactory

VESPA_URL = os.environ.get("VESPA_URL", "")
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
    package.write(app, int(os.environ.get("VESPA_DIM", "16")))
    deploy(app, config_url, VESPA_URL, wait_s=300)


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
            return VespaIndex(url=VESPA_URL, namespace=NAMESPACE, dim=dim)

        return make


@pytest.mark.asyncio(loop_scope="session")
class TestLiveVespaIssue17:
    """Issue 17 against a real Vespa (deployed with VESPA_DIM=16): the captions' language, a
    constant leg in hybrid-linear, deep client-fused pages against the embedded engine.
    (Mixed-case ids are in the conformance suite above.) Wipes namespace clipsearch-test."""

    async def _index(self) -> VespaIndex:
        await wipe(NAMESPACE)
        return VespaIndex(url=VESPA_URL, namespace=NAMESPACE, dim=16)

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
