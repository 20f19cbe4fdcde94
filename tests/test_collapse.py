"""Near-duplicate collapse: the algorithm, and ``collapse=`` through the API on the embedded
engine (pagination over the collapsed window, counts per hit, the window limit)."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from clipsearch.collapse import collapse
from clipsearch.documents import ImageDocument
from clipsearch.index import open_index
from clipsearch.settings import Settings
from services.api.app import create_app
from tests.api_fakes import FakeEmbedder, unit

DIM = 8


def near(base: list[float], seed: int, eps: float) -> list[float]:
    v = np.asarray(base) + eps * np.random.default_rng(seed).normal(size=len(base))
    return [float(x) for x in v / np.linalg.norm(v)]


def test_leader_collapse_keeps_the_best_of_each_group() -> None:
    a, b = unit(1), unit(2)
    ranking = [a, near(a, 10, 0.01), b, near(a, 11, 0.01), near(b, 12, 0.01), unit(3)]
    out = collapse(ranking, 0.97)
    assert out.kept == [0, 2, 5]
    assert out.folded == [2, 1, 0]
    assert out.leader_of == [0, 0, 2, 0, 2, 5]
    assert collapse(ranking, 1.0).kept == [0, 1, 2, 3, 4, 5]  # only exact duplicates fold
    assert collapse([], 0.9).kept == []
    with pytest.raises(ValueError):
        collapse(ranking, 0.0)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """An embedded index of 8 scenes, each as 3 near-identical tiles (RSICD-like)."""
    docs = []
    for scene in range(8):
        base = unit(100 + scene)
        for tile in range(3):
            docs.append(ImageDocument(
                id=f"t:s{scene}_{tile}", captions=[f"scene {scene} harbor tile"], dataset="t",
                model_id="fake", embedding=near(base, scene * 10 + tile, 0.02)))
    settings = Settings(data_dir=tmp_path_factory.mktemp("collapse"), embedding_dim=DIM)
    index = open_index(settings)
    app = create_app(settings, index=index, embedder=FakeEmbedder())
    with TestClient(app) as c:
        import asyncio

        async def feed() -> None:
            await index.ensure_ready()
            await index.upsert(docs)
            await index.flush()
        asyncio.run(feed())
        yield c


def test_collapse_pages_and_counts(client: TestClient) -> None:
    q = {"q": "harbor tile", "mode": "hybrid", "image_id": "t:s0_0"}
    plain = client.get("/search", params={**q, "limit": 30}).json()
    assert len(plain["hits"]) == 24 and all(h["collapsed"] is None for h in plain["hits"])
    whole = client.get("/search", params={**q, "limit": 30, "collapse": 0.97}).json()
    hits = whole["hits"]
    assert len(hits) == 8  # one per scene
    assert {h["id"].split("_")[0] for h in hits} == {f"t:s{i}" for i in range(8)}
    assert sum(h["collapsed"] for h in hits) == 16 and all(h["collapsed"] == 2 for h in hits)
    # each kept hit is its group's best-ranked member in the plain ranking
    order = [h["id"] for h in plain["hits"]]
    for h in hits:
        group = [i for i in order if i.split("_")[0] == h["id"].split("_")[0]]
        assert group[0] == h["id"]
    pages = []
    for offset in (0, 3, 6):
        page = client.get("/search", params={**q, "limit": 3, "offset": offset,
                                             "collapse": 0.97}).json()
        pages += [h["id"] for h in page["hits"]]
    assert pages == [h["id"] for h in hits]


def test_collapse_window_limit_is_a_clear_422(client: TestClient) -> None:
    r = client.get("/search", params={"q": "harbor", "offset": 95, "limit": 10,
                                      "collapse": 0.9})
    assert r.status_code == 422, r.text
    assert "top 100 hits" in r.json()["error"]["message"]
    assert client.get("/search", params={"q": "harbor", "collapse": 1.5}).status_code == 422


def test_batched_embeddings_equal_one_get_each(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The embedded engine reads the window's embeddings in one query; the per-id GET path
    (other engines) gives the same vectors, and unknown ids are left out by both."""
    import asyncio

    from services.api.collapse import EmbeddingLookup, _embeddings

    class PerIdOnly:
        def __init__(self, inner: object) -> None:
            self.get = inner.get  # type: ignore[attr-defined]

    settings = Settings(data_dir=tmp_path_factory.mktemp("collapse-batch"), embedding_dim=DIM)

    async def run() -> None:
        index = open_index(settings)
        await index.ensure_ready()
        await index.upsert([ImageDocument(id=f"b:{i}", captions=["x"], dataset="b",
                                          model_id="fake", embedding=unit(i)) for i in range(5)])
        await index.flush()
        engine = index.at_generation((await index.active_generation()).name)  # type: ignore[attr-defined]
        assert isinstance(engine, EmbeddingLookup)
        ids = ["b:3", "b:0", "missing", "b:4"]
        batched = await _embeddings(engine, ids)  # type: ignore[arg-type]
        single = await _embeddings(PerIdOnly(engine), ids)  # type: ignore[arg-type]
        assert sorted(batched) == sorted(single) == ["b:0", "b:3", "b:4"]
        for doc_id, vec in batched.items():
            np.testing.assert_allclose(vec, single[doc_id])
            np.testing.assert_allclose(vec, unit(int(doc_id[2:])), atol=1e-6)
        await index.close()

    asyncio.run(run())
