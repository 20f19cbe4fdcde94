"""Generations on the embedded engine: the conformance suites on ``GenerationalEmbeddedIndex``
(what ``open_index`` returns) and its on-disk catalog."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipsearch.index import open_index
from clipsearch.index.base import GenerationalIndex, SearchIndex
from clipsearch.index.embedded import EmbeddedIndex
from clipsearch.index.embedded_generations import GenerationalEmbeddedIndex
from clipsearch.index.generation_registry import REGISTRY_FILE
from clipsearch.search import Mode
from clipsearch.settings import Settings
from tests.index_conformance import (
    CORPUS,
    DIM,
    GenerationConformance,
    IndexConformance,
    IndexFactory,
    ids,
    plan,
)


class TestGenerationalEmbedded(IndexConformance, GenerationConformance):
    @pytest.fixture(scope="class")
    def index_factory(self, tmp_path_factory: pytest.TempPathFactory) -> IndexFactory:
        async def make(dim: int) -> SearchIndex:
            return GenerationalEmbeddedIndex(tmp_path_factory.mktemp("gens"), dim=dim)

        return make


@pytest.mark.asyncio(loop_scope="session")
async def test_index_made_before_generations_is_adopted_unchanged(tmp_path: Path) -> None:
    old = EmbeddedIndex(tmp_path, dim=DIM)
    await old.upsert(CORPUS)
    await old.close()
    index = GenerationalEmbeddedIndex(tmp_path, dim=DIM)
    assert isinstance(index, GenerationalIndex)
    assert await index.count() == len(CORPUS)
    assert not (tmp_path / REGISTRY_FILE).exists()  # reading writes nothing
    g1 = await index.create_generation(model_id="m", space=None, dim=DIM)
    catalog = json.loads((tmp_path / REGISTRY_FILE).read_text())
    assert catalog["active"] == "g0"
    assert {g["name"]: g["table"] for g in catalog["generations"]} == {
        "g0": "images", g1.name: f"images__{g1.name}"}
    hits = await index.search(plan(Mode.lexical, text="harbor"))
    assert ids(hits)
    await index.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_another_process_activation_is_followed_without_reopening(tmp_path: Path) -> None:
    serving = GenerationalEmbeddedIndex(tmp_path, dim=DIM)
    await serving.upsert(CORPUS)
    admin = GenerationalEmbeddedIndex(tmp_path, dim=DIM)
    g1 = await admin.create_generation(model_id="m", space=None, dim=DIM)
    await admin.at_generation(g1.name).upsert(CORPUS[:1])
    await admin.complete_generation(g1.name)
    assert await serving.count() == len(CORPUS)
    await admin.activate_generation(g1.name)
    assert await serving.count() == 1
    await admin.close()
    await serving.close()


def test_open_index_gives_the_generational_engine(tmp_path: Path) -> None:
    assert isinstance(open_index(Settings(data_dir=tmp_path)), GenerationalEmbeddedIndex)
