"""VespaIndex against the loopback Vespa: request formats per mode, retries, feed block,
errors, degraded coverage, timeouts. (Loopback only; nothing here talks to a live Vespa.)"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator

import pytest

from clipsearch.errors import (
    BackendError,
    BackendUnavailable,
    FeedBlocked,
    InvalidRequest,
)
from clipsearch.index import open_index
from clipsearch.index.vespa.client import RetryPolicy, VespaIndex
from clipsearch.index.vespa.generations import GenerationalVespaIndex
from clipsearch.search import Filters, Fusion, HybridParameters, Mode, SearchPlan
from clipsearch.settings import Settings
from tests.index_conformance import CORPUS, DIM, unit_vector
from tests.vespa_engine import parse_yql, walk
from tests.vespa_loopback import LoopbackVespa

pytestmark = pytest.mark.asyncio(loop_scope="session")
FAST = RetryPolicy(attempts=3, initial_s=0.01, max_s=0.02)


@pytest.fixture
def vespa() -> Iterator[LoopbackVespa]:
    with LoopbackVespa(dim=DIM) as server:
        yield server
        assert server.violations == [], server.violations


@pytest.fixture
async def index(vespa: LoopbackVespa) -> AsyncIterator[VespaIndex]:
    idx = VespaIndex(url=vespa.url, namespace="clipsearch", dim=DIM, timeout_s=2.0, retry=FAST)
    yield idx
    await idx.close()


@pytest.fixture
async def loaded(index: VespaIndex) -> VespaIndex:
    await index.upsert(CORPUS)
    return index


async def test_open_index_builds_vespa_client() -> None:
    idx = open_index(Settings(backend="vespa", embedding_dim=DIM,
                              vespa_url="http://127.0.0.1:1/"))
    # the generational wrapper (clipsearch.index.vespa.generations) over a VespaIndex
    assert isinstance(idx, GenerationalVespaIndex) and idx.dim == DIM
    assert isinstance(idx.at_generation("g0"), VespaIndex)


async def test_documents_use_document_v1(loaded: VespaIndex, vespa: LoopbackVespa) -> None:
    puts = [r for r in vespa.requests if r.method == "POST" and r.path.startswith("/document")]
    assert len(puts) == len(CORPUS)
    put = next(r for r in puts if r.body["fields"]["id"] == "rsicd:harbor_2")
    assert put.path == "/document/v1/clipsearch/image/docid/rsicd%3Aharbor_2"
    fields = put.body["fields"]
    assert fields["caption"] == "a harbor with cranes and containers\nthe harbor is large"
    assert fields["captions"] == ["a harbor with cranes and containers", "the harbor is large"]
    assert len(fields["embedding"]["values"]) == DIM
    assert set(vespa.docs) == {f"clipsearch/{d.id}" for d in CORPUS}


@pytest.mark.parametrize("mode", list(Mode))
async def test_yql_shape_per_mode(loaded: VespaIndex, vespa: LoopbackVespa, mode: Mode) -> None:
    text = 'harbor" or true) or ("x'  # an injection attempt stays in `query`
    plan = SearchPlan(mode=mode, text=text, vector=unit_vector(3), limit=5, offset=2,
                      filters=Filters(dataset=["rsicd"], category=["harbor", "park"]),
                      exclude_ids=["rsicd:park_1"])
    await loaded.search(plan)
    body = vespa.searches()[-1]
    yql = body["yql"]
    assert text not in yql and "or true" not in yql and "x\"" not in yql
    # hybrid's default fusion (score) runs the first-phase-only profile
    assert body["ranking.profile"] == ("hybrid-score" if mode == Mode.hybrid else mode.value)
    assert (body["hits"], body["offset"]) == (5, 2)
    assert 'dataset in ("rsicd")' in yql and 'category in ("harbor", "park")' in yql
    assert '!(id in ("rsicd:park_1"))' in yql
    kinds = {x.kind for x in walk(parse_yql(yql).where)}
    assert ("userquery" in kinds) == (mode != Mode.vector)
    assert ("nn" in kinds) == (mode != Mode.lexical)
    if mode != Mode.vector:
        assert body["query"] == text and body["model.defaultIndex"] == "caption"
    else:
        assert "query" not in body
    assert ("input.query(q)" in body) == (mode != Mode.lexical)
    if mode == Mode.hybrid:
        assert body["ranking.globalPhase.rerankCount"] == 2 * plan.window
        assert "{targetHits:100}nearestNeighbor(embedding, q)" in yql


async def test_linear_fusion_sends_alpha(loaded: VespaIndex, vespa: LoopbackVespa) -> None:
    plan = SearchPlan(mode=Mode.hybrid, text="harbor", vector=unit_vector(3),
                      hybrid=HybridParameters(fusion=Fusion.linear, alpha=0.25))
    result = await loaded.search(plan)
    body = vespa.searches()[-1]
    assert body["ranking.profile"] == "hybrid-linear" and body["input.query(alpha)"] == 0.25
    assert result.hits and all(h.scores.lexical is not None for h in result.hits)


async def test_other_rrf_k_is_fused_by_the_client(loaded: VespaIndex,
                                                  vespa: LoopbackVespa) -> None:
    base = {"mode": Mode.hybrid, "text": "green river", "vector": unit_vector(4), "limit": 3}
    await loaded.search(SearchPlan(**base))
    assert vespa.searches()[-1]["hits"] == 3
    result = await loaded.search(SearchPlan(**base, offset=1,
                                            hybrid=HybridParameters(fusion=Fusion.rrf,
                                                                    rrf_k=5)))
    body = vespa.searches()[-1]
    assert (body["hits"], body["offset"]) == (200, 0)  # the whole window, fused here
    assert len(result.hits) == 3 and result.hits[0].score <= 1 / 6 + 1 / 6


async def test_text_without_terms(loaded: VespaIndex, vespa: LoopbackVespa) -> None:
    before = len(vespa.searches())
    result = await loaded.search(SearchPlan(mode=Mode.lexical, text="!!! ???"))
    assert result.hits == [] and len(vespa.searches()) == before  # not sent at all
    hybrid = await loaded.search(SearchPlan(mode=Mode.hybrid, text="(((", vector=unit_vector(1)))
    assert "query" not in vespa.searches()[-1] and len(hybrid.hits) == 10
    assert all(h.scores.lexical == 0.0 for h in hybrid.hits)


async def test_image_query_in_hybrid_mode(loaded: VespaIndex, vespa: LoopbackVespa) -> None:
    result = await loaded.search(SearchPlan(mode=Mode.hybrid, vector=CORPUS[0].embedding))
    assert result.hits[0].id == CORPUS[0].id
    assert all(h.scores.lexical is None for h in result.hits)


async def test_put_retries_on_429_and_503(index: VespaIndex, vespa: LoopbackVespa) -> None:
    vespa.fail("POST", "/document/v1/", 429, times=1)
    vespa.fail("POST", "/document/v1/", 503, times=1)
    assert await index.upsert(CORPUS[:3]) == 3
    assert len(vespa.docs) == 3
    puts = [r for r in vespa.requests if r.method == "POST"]
    assert len(puts) == 5


async def test_put_gives_up_after_attempts(index: VespaIndex, vespa: LoopbackVespa) -> None:
    vespa.fail("POST", "/document/v1/", 504, times=10)
    with pytest.raises(BackendUnavailable, match="after 3 attempts"):
        await index.upsert(CORPUS[:1])


async def test_feed_block_507_is_plain_and_not_retried(index: VespaIndex,
                                                       vespa: LoopbackVespa) -> None:
    vespa.fail("POST", "/document/v1/", 507, times=5,
               body={"message": "[UNKNOWN(251013) @ localhost]: ReturnCode(NO_SPACE, Put "
                                "operation rejected: disk limit (0.8) reached)"})
    with pytest.raises(FeedBlocked, match="disk or memory limit") as info:
        await index.upsert(CORPUS[:1])
    assert "NO_SPACE" in info.value.message
    assert len([r for r in vespa.requests if r.method == "POST"]) == 1


async def test_other_4xx_is_not_retried(index: VespaIndex, vespa: LoopbackVespa) -> None:
    vespa.fail("POST", "/document/v1/", 400, times=5,
               body={"message": "No field 'x' in the structure of type 'image'"})
    with pytest.raises(BackendError, match="No field 'x'"):
        await index.upsert(CORPUS[:1])
    assert len([r for r in vespa.requests if r.method == "POST"]) == 1


async def test_search_errors_become_api_errors(loaded: VespaIndex, vespa: LoopbackVespa) -> None:
    plan = SearchPlan(mode=Mode.lexical, text="harbor")
    vespa.fail("POST", "/search/", 400, body={"root": {"errors": [
        {"code": 4, "summary": "Invalid query parameter", "message": "bad yql"}]}})
    with pytest.raises(InvalidRequest, match="bad yql"):
        await loaded.search(plan)
    vespa.fail("POST", "/search/", 504, body={"root": {"fields": {"totalCount": 0}, "errors": [
        {"code": 12, "summary": "Timed out", "message": "timeout while waiting for content"}]}})
    with pytest.raises(BackendUnavailable, match="Timed out"):
        await loaded.search(plan)
    vespa.fail("POST", "/search/", 500, body={"root": {"errors": [
        {"code": 13, "summary": "Internal server error", "message": "boom"}]}})
    with pytest.raises(BackendError, match="boom"):
        await loaded.search(plan)
    vespa.fail("POST", "/search/", 503, body={"message": "overloaded"})
    with pytest.raises(BackendUnavailable):
        await loaded.search(plan)


async def test_degraded_coverage_is_flagged(loaded: VespaIndex, vespa: LoopbackVespa) -> None:
    plan = SearchPlan(mode=Mode.lexical, text="harbor")
    assert not (await loaded.search(plan)).degraded
    vespa.fail("POST", "/search/", degraded=True)
    result = await loaded.search(plan)
    assert result.degraded and result.hits


async def test_client_timeout(vespa: LoopbackVespa) -> None:
    idx = VespaIndex(url=vespa.url, namespace="clipsearch", dim=DIM, timeout_s=0.05, retry=FAST)
    try:
        vespa.fail("POST", "/search/", 200, delay_s=1.0)  # longer than timeout + 0.5 s margin
        with pytest.raises(BackendUnavailable, match="did not answer in time"):
            await idx.count()
    finally:
        await idx.close()


async def test_unreachable_and_undeployed() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    idx = VespaIndex(url=f"http://127.0.0.1:{port}", namespace="clipsearch", dim=DIM,
                     retry=FAST)
    with pytest.raises(BackendUnavailable, match="not reachable"):
        await idx.ping()
    with pytest.raises(BackendUnavailable):
        await idx.upsert(CORPUS[:1])
    await idx.close()
    with LoopbackVespa(dim=DIM, deployed=False) as server:
        idx = VespaIndex(url=server.url, namespace="clipsearch", dim=DIM, retry=FAST)
        with pytest.raises(BackendUnavailable, match="clipsearch vespa deploy"):
            await idx.ensure_ready()
        await idx.close()


async def test_get_parses_tensor_forms(loaded: VespaIndex) -> None:
    from clipsearch.index.vespa.docs import tensor_values

    assert tensor_values([1, 2]) == [1.0, 2.0]
    assert tensor_values({"values": [1, 2]}) == [1.0, 2.0]
    assert tensor_values({"cells": [{"address": {"x": "1"}, "value": 2},
                                    {"address": {"x": "0"}, "value": 1}]}) == [1.0, 2.0]
    assert tensor_values({"cells": {"1": 2, "0": 1}}) == [1.0, 2.0]
    with pytest.raises(BackendError):
        tensor_values("nope")
    got = await loaded.get(CORPUS[0].id)
    assert got is not None and got.id == CORPUS[0].id
