"""Index generations on Vespa (issue 14, "the Vespa way"), through the loopback Vespa that
checks every request against Vespa's documented formats (NOT a live Vespa): the generation
conformance suite, per-query field and profile, the catalog shared by replicas, the switch
under a search loop, no ghost documents, the package with two generations (golden files and
lint)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from clipsearch.errors import InvalidRequest
from clipsearch.index.base import GenerationalIndex, SearchIndex
from clipsearch.index.generations import GenerationState
from clipsearch.index.vespa import generation_names as gn
from clipsearch.index.vespa import package
from clipsearch.index.vespa.catalog import NoCatalogType
from clipsearch.index.vespa.client import RetryPolicy, VespaIndex
from clipsearch.index.vespa.generation_schema import GenerationField
from clipsearch.index.vespa.generations import GenerationalVespaIndex, PackageDeployer
from clipsearch.index.vespa.lint import lint_files
from clipsearch.search import Mode
from clipsearch.settings import Settings
from tests.index_conformance import (
    CORPUS,
    DIM,
    GenerationConformance,
    IndexFactory,
    ids,
    plan,
    unit_vector,
)
from tests.vespa_loopback import LoopbackVespa

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden" / "vespa-generations"


def make_index(server: LoopbackVespa, dim: int, *, deploy: bool = True,
               ttl_s: float = 1.0) -> GenerationalVespaIndex:
    base = VespaIndex(url=server.url, namespace="clipsearch", dim=dim, timeout_s=5.0,
                      retry=RetryPolicy(attempts=3, initial_s=0.01, max_s=0.05))
    settings = Settings(embedding_dim=dim, vespa_config_url=server.url)
    return GenerationalVespaIndex(base, catalog_ttl_s=ttl_s, field_wait_s=5.0,
                                  deployer=PackageDeployer(settings) if deploy else None)


class TestVespaGenerations(GenerationConformance):
    @pytest.fixture(scope="class")
    def index_factory(self, loopback_servers: list[LoopbackVespa]) -> IndexFactory:
        async def make(dim: int) -> SearchIndex:
            server = LoopbackVespa(dim=dim).__enter__()
            loopback_servers.append(server)
            return make_index(server, dim)

        return make


@pytest.fixture
def vespa() -> Iterator[LoopbackVespa]:
    with LoopbackVespa(dim=DIM) as server:
        yield server
    assert server.violations == [], server.violations


async def _two_generations(vespa: LoopbackVespa) -> GenerationalVespaIndex:
    """g0 = CORPUS; g1 (DIM + 2, model m2) holds every document but the last, complete."""
    index = make_index(vespa, DIM)
    await index.ensure_ready()
    await index.upsert(CORPUS)
    g1 = await index.create_generation(model_id="m2", space="b" * 64, dim=DIM + 2)
    view = index.at_generation(g1.name)
    await view.upsert([d.model_copy(update={"embedding": unit_vector(40 + i, DIM + 2),
                                            "model_id": "m2"})
                       for i, d in enumerate(CORPUS[:-1])])
    await index.complete_generation(g1.name)
    return index


@pytest.mark.asyncio(loop_scope="session")
async def test_queries_use_the_active_generations_field_and_profiles(
        vespa: LoopbackVespa) -> None:
    index = await _two_generations(vespa)
    assert set(vespa.state.schema.fields) >= {"embedding", "embedding_g1", "generations"}
    await index.activate_generation("g1")
    target = CORPUS[2]
    hit = await index.search(plan(Mode.vector, vector=unit_vector(42, DIM + 2), limit=1))
    assert ids(hit) == [target.id] and hit.hits[0].document.model_id == "m2"
    body = vespa.searches()[-1]
    assert body["ranking.profile"] == "vector-g1"
    assert "nearestNeighbor(embedding_g1, q)" in body["yql"]
    assert 'generations contains "g1"' in body["yql"]
    # lexical and hybrid on g1 only see g1's documents (the last one was never re-embedded)
    words = CORPUS[-1].captions[0].split()[0]
    lexical = await index.search(plan(Mode.lexical, text=words, limit=50))
    assert CORPUS[-1].id not in ids(lexical)
    hybrid = await index.search(plan(Mode.hybrid, text=words, vector=unit_vector(42, DIM + 2)))
    assert vespa.searches()[-1]["ranking.profile"].endswith("-g1")
    assert CORPUS[-1].id not in ids(hybrid)
    assert await index.count() == len(CORPUS) - 1
    # rollback: the original field, profiles and documents
    await index.activate_generation("g0")
    hit = await index.search(plan(Mode.vector, vector=CORPUS[5].embedding, limit=1))
    assert ids(hit) == [CORPUS[5].id] and vespa.searches()[-1]["ranking.profile"] == "vector"
    assert "generations" not in vespa.searches()[-1]["yql"]
    assert await index.count() == len(CORPUS)
    await index.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_writes_are_partial_updates_without_ghost_documents(vespa: LoopbackVespa) -> None:
    index = await _two_generations(vespa)
    updates = [r for r in vespa.requests if r.method == "PUT"]
    assert updates and all(set(r.body["fields"]["embedding_g1"]) == {"assign"} for r in updates)
    assert all(r.body["fields"]["generations"] == {"add": {"g1": 1}} for r in updates)
    stored = vespa.docs[f"clipsearch/{CORPUS[0].id}"]
    assert len(stored["embedding"]) == DIM and len(stored["embedding_g1"]) == DIM + 2
    ghost = CORPUS[0].model_copy(update={"id": "ucm:gone_1",
                                         "embedding": unit_vector(99, DIM + 2)})
    await index.at_generation("g1").upsert([ghost])  # a re-index never creates a document
    assert "clipsearch/ucm:gone_1" not in vespa.docs
    # drop: the field's values and the catalog entry go; the documents stay
    await index.drop_generation("g1")
    assert [g.name for g in await index.generations()] == ["g0"]
    assert all("embedding_g1" not in d and "generations" not in d for d in vespa.docs.values())
    assert await index.count() == len(CORPUS)
    names = [g.name for g in package_generations(index)]
    assert names == []  # the next package leaves the field out
    await index.close()


def package_generations(index: GenerationalVespaIndex) -> list[GenerationField]:
    from clipsearch.index.vespa.generation_schema import later_generations

    return later_generations(index.catalog.last)


@pytest.mark.asyncio(loop_scope="session")
async def test_replicas_follow_activate_and_every_answer_is_one_generation(
        vespa: LoopbackVespa) -> None:
    admin = await _two_generations(vespa)
    replica = make_index(vespa, DIM, deploy=False, ttl_s=0.02)  # another API process
    assert (await replica.active_generation()).name == "g0"
    models: list[set[str]] = []
    errors: list[BaseException] = []
    stop = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            try:
                pinned = await replica.active_generation()
                view = replica.at_generation(pinned.name)
                vec = unit_vector(3, pinned.dim)
                result = await view.search(plan(Mode.hybrid, text="harbor", vector=vec))
                models.append({h.document.model_id for h in result.hits})
            except Exception as exc:  # counted: must stay 0
                errors.append(exc)

    task = asyncio.create_task(loop())
    for name in ("g1", "g0", "g1"):
        await asyncio.sleep(0.1)
        await admin.activate_generation(name)
    await asyncio.sleep(0.1)
    stop.set()
    await task
    assert errors == []
    assert all(len(m) == 1 for m in models) and {next(iter(m)) for m in models} == {
        "test-model", "m2"}
    assert (await replica.active_generation()).name == "g1"
    await replica.close()
    await admin.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_without_a_deployer_the_generation_waits_for_its_field(
        vespa: LoopbackVespa) -> None:
    index = make_index(vespa, DIM, deploy=False)
    await index.upsert(CORPUS[:2])
    with pytest.raises(InvalidRequest, match=r"vespa package --from-catalog") as err:
        await index.create_generation(model_id="m2", space=None, dim=DIM, name="v2")
    assert err.value.reason == "generation_field_missing"
    gen = await index.generation("v2")
    assert gen.state == GenerationState.building and gen.table == "embedding_v2"
    with pytest.raises(InvalidRequest, match="cannot name a Vespa field"):
        await index.create_generation(model_id=None, space=None, dim=DIM, name="Bad-Name")
    with pytest.raises(InvalidRequest, match="reserved"):
        gn.field_for("g1_bits")
    # the probe for the missing field was answered 400 (no such profile), as Vespa would
    assert vespa.violations == ["Requested rank profile 'vector-v2' is undefined"]
    vespa.state.violations.clear()
    await index.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_an_application_without_the_catalog_type_reads_as_g0(vespa: LoopbackVespa) -> None:
    vespa.state.catalog_schema = None  # a package deployed before generations
    index = make_index(vespa, DIM, deploy=False)
    # a feed still works there (the space stays unrecorded, as before generations)
    claimed = await index.claim_space("g0", model_id="test-model", space="a" * 64, dim=DIM)
    assert claimed.space is None
    await index.upsert(CORPUS[:3])
    assert isinstance(index, GenerationalIndex)
    [g0] = await index.generations()
    assert (g0.name, g0.active, g0.documents, g0.table) == ("g0", True, 3, "embedding")
    with pytest.raises(NoCatalogType, match="clipsearch vespa deploy"):
        await index.create_generation(model_id="m", space=None, dim=DIM)
    vespa.state.violations.clear()  # the GETs of the missing type were answered 400 on purpose
    await index.close()


def test_two_generation_package_golden_and_lint() -> None:
    files = package.render(512, generations=[GenerationField(name="g1", dim=768)])
    for rel, text in files.items():
        assert (GOLDEN / rel).read_text() == text, (
            f"{rel}: regenerate with `clipsearch vespa package --dim 512 --generation g1=768 "
            "--dir tests/golden/vespa-generations`")
    assert lint_files(files, 512) == []
    sd = files["schemas/image.sd"]
    assert "field embedding_g1 type tensor<float>(x[768])" in sd
    assert "rank-profile hybrid-score-g1" in sd
    broken = dict(files)
    broken["schemas/image.sd"] = sd.replace("closeness(field, embedding_g1)",
                                            "closeness(field, embedding)")
    problems = [p.message for p in lint_files(broken, 512)]
    assert any("vector_score must use the field embedding_g1" in p for p in problems)
    orphan = package.render(512)["schemas/image.sd"].replace(
        "rank-profile hybrid-score {", "rank-profile hybrid-score-old {", 1)
    assert any("names generation old" in p.message for p in lint_files(
        {**files, "schemas/image.sd": orphan}, 512))


def test_api_on_vespa_refuses_another_space_and_names_the_generation() -> None:
    """The gateway's 409 embedding_space_mismatch with the Vespa engine (loopback)."""
    from fastapi.testclient import TestClient

    from services.api.app import create_app
    from tests.api_fakes import DIM as API_DIM
    from tests.api_fakes import doc
    from tests.test_api_generations import SPACE_A, SPACE_B, SpacedEmbedder

    with LoopbackVespa(dim=API_DIM) as server:
        async def build() -> None:
            index = make_index(server, API_DIM, deploy=False)
            await index.claim_space("g0", model_id="model-zero", space=SPACE_A, dim=API_DIM)
            await index.upsert([doc(i, captions=[f"zero river {i}"], model_id="model-zero")
                                for i in range(4)])
            await index.close()

        asyncio.run(build())
        settings = Settings(backend="vespa", vespa_url=server.url, embedding_dim=API_DIM,
                            vespa_catalog_ttl_s=0)
        with TestClient(create_app(settings, embedder=SpacedEmbedder(SPACE_B))) as client:
            r = client.get("/search", params={"q": "river", "mode": "vector"})
            assert r.status_code == 409 and r.json()["error"]["reason"] == (
                "embedding_space_mismatch")
            lexical = client.get("/search", params={"q": "river", "mode": "lexical"})
            assert lexical.status_code == 200 and lexical.json()["generation"] == "g0"
        with TestClient(create_app(settings, embedder=SpacedEmbedder(SPACE_A))) as client:
            body = client.get("/search", params={"q": "river", "mode": "hybrid"}).json()
            assert body["generation"] == "g0" and body["index_model"] == "model-zero"
            assert body["hits"]
        assert server.violations == []


def test_package_from_the_running_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    """`clipsearch vespa package --from-catalog` writes the fields of the catalog's
    generations: here the golden two-generation package."""
    import argparse

    from clipsearch.index.vespa.commands import register

    with LoopbackVespa(dim=512) as server:
        async def build() -> None:
            index = make_index(server, 512)
            await index.create_generation(model_id="m2", space=None, dim=768, name="g1")
            await index.close()

        asyncio.run(build())
        monkeypatch.setenv("CLIPSEARCH_VESPA_URL", server.url)
        parser = argparse.ArgumentParser()
        register(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args(["vespa", "package", "--dim", "512", "--from-catalog",
                                  "--check", "--dir", str(GOLDEN)])
        assert args.func(args) == 0
        assert server.violations == []
