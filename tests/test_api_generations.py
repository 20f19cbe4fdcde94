"""The gateway and index generations: space mismatch -> 409, /ready, answers pinned to one
generation while another process switches the active one."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from clipsearch.documents import ImageDocument
from clipsearch.index.embedded_generations import GenerationalEmbeddedIndex
from clipsearch.settings import Settings
from services.api.app import create_app
from tests.api_fakes import DIM, FakeEmbedder, doc

SPACE_A, SPACE_B = "a" * 64, "b" * 64


class SpacedEmbedder(FakeEmbedder):
    def __init__(self, space: str | None) -> None:
        super().__init__()
        self.space_id = space


def _docs(tag: str) -> list[ImageDocument]:
    return [doc(i, captions=[f"{tag} river {i}"], model_id=f"model-{tag}") for i in range(6)]


def _build(path: Path) -> str:
    """g0 (space A, captions 'zero ...') active; g1 (space B, 'one ...') complete."""

    async def go() -> str:
        index = GenerationalEmbeddedIndex(path, dim=DIM)
        await index.claim_space("g0", model_id="model-zero", space=SPACE_A, dim=DIM)
        await index.upsert(_docs("zero"))
        g1 = await index.create_generation(model_id="model-one", space=SPACE_B, dim=DIM)
        await index.at_generation(g1.name).upsert(_docs("one"))
        await index.complete_generation(g1.name)
        await index.close()
        return g1.name

    return asyncio.run(go())


@pytest.fixture()
def index_dir(tmp_path: Path) -> Path:
    _build(tmp_path / "index")
    return tmp_path / "index"


def _client(index_dir: Path, space: str | None) -> TestClient:
    settings = Settings(data_dir=index_dir.parent, embedding_dim=DIM)
    return TestClient(create_app(settings, embedder=SpacedEmbedder(space)))


def test_matching_space_serves_and_names_the_generation(index_dir: Path) -> None:
    with _client(index_dir, SPACE_A) as client:
        body = client.get("/search", params={"q": "river", "mode": "hybrid"}).json()
        assert body["generation"] == "g0" and body["index_model"] == "model-zero"
        assert body["hits"] and all("zero" in h["captions"][0] for h in body["hits"])
        ready = client.get("/ready").json()
        assert ready["generation"] == "g0" and ready["embedding_space"].startswith("ok")


def test_other_space_is_refused_for_encoded_queries_only(index_dir: Path) -> None:
    with _client(index_dir, SPACE_B) as client:
        for mode in ("vector", "hybrid"):
            r = client.get("/search", params={"q": "river", "mode": mode})
            assert r.status_code == 409, r.text
            err = r.json()["error"]
            assert err["reason"] == "embedding_space_mismatch"
            assert "clip-aaaa" in err["message"] and "clip-bbbb" in err["message"]
            assert "reindex" in err["message"] and "model-zero" in err["message"]
        assert client.get("/search", params={"q": "river", "mode": "lexical"}).status_code == 200
        more = client.get("/search", params={"image_id": "t:1", "mode": "vector"})
        assert more.status_code == 200 and more.json()["hits"]
        ready = client.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["embedding_space"].startswith("mismatch: ")


def test_unknown_spaces_are_not_refused(index_dir: Path) -> None:
    with _client(index_dir, None) as client:
        assert client.get("/search", params={"q": "river", "mode": "vector"}).status_code == 200
        assert client.get("/ready").json()["embedding_space"].startswith("unverified")


def test_activate_under_load_zero_errors_one_generation_per_answer(index_dir: Path) -> None:
    """Searches in a loop while another 'process' flips the active generation."""
    stop = threading.Event()
    flips: list[str] = []

    def flipper() -> None:
        async def go() -> None:
            admin = GenerationalEmbeddedIndex(index_dir, dim=DIM)
            names = ["g1", "g0"]
            while not stop.is_set() and len(flips) < 40:
                name = names[len(flips) % 2]
                await admin.activate_generation(name)
                flips.append(name)
                await asyncio.sleep(0.005)
            await admin.close()
        asyncio.run(go())

    seen: dict[str, int] = {}
    with _client(index_dir, None) as client:
        thread = threading.Thread(target=flipper)
        thread.start()
        try:
            for _ in range(150):
                r = client.get("/search", params={"q": "river", "mode": "hybrid",
                                                  "facets": "true"})
                assert r.status_code == 200, r.text
                body = r.json()
                tag = {"g0": "zero", "g1": "one"}[body["generation"]]
                assert body["index_model"] == f"model-{tag}"
                assert all(h["captions"][0].startswith(tag) for h in body["hits"])
                seen[body["generation"]] = seen.get(body["generation"], 0) + 1
                if len(flips) >= 40 and len(seen) == 2:
                    break
        finally:
            stop.set()
            thread.join()
    assert len(flips) >= 2 and set(seen) == {"g0", "g1"}


def test_a_building_generation_is_not_served(index_dir: Path) -> None:
    async def go() -> None:
        index = GenerationalEmbeddedIndex(index_dir, dim=DIM)
        await index.create_generation(model_id="m", space=None, dim=DIM, name="g9",
                                      expected=10)
        await index.close()

    asyncio.run(go())
    with _client(index_dir, None) as client:
        assert client.get("/search", params={"q": "river"}).json()["generation"] == "g0"
