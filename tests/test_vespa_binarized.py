"""Binarised vectors in Vespa (issue 17 item 9, last part): the ``<field>_bits`` int8 HNSW
field (``binarize | pack_bits``, hamming) for the first phase and the full vector re-ranked
in the second phase; the golden package, the lint, the client's request bodies and the
loopback's two-phase ranking. Loopback only: nothing here talks to a live Vespa."""

from __future__ import annotations

import argparse
import functools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest

from clipsearch.documents import ImageDocument
from clipsearch.embeddings import l2_normalize
from clipsearch.errors import InvalidRequest
from clipsearch.fusion import closeness_from_cosine
from clipsearch.index.base import SearchIndex
from clipsearch.index.vespa import binarized as vbin
from clipsearch.index.vespa import package
from clipsearch.index.vespa import schema_names as n
from clipsearch.index.vespa.client import RetryPolicy, VespaIndex
from clipsearch.index.vespa.commands import register
from clipsearch.index.vespa.hosts import Topology
from clipsearch.index.vespa.hosts import render as render_cluster
from clipsearch.index.vespa.lint import lint_files, lint_package
from clipsearch.index.vespa.sd_parser import parse_schema
from clipsearch.search import Fusion, HybridParameters, Mode, SearchPlan
from clipsearch.settings import Settings
from tests.index_conformance import IndexConformance, IndexFactory
from tests.vespa_engine import parse_yql, walk
from tests.vespa_loopback import LoopbackVespa

SD = f"schemas/{n.SCHEMA}.sd"
GOLDEN = Path(__file__).resolve().parent / "golden" / "vespa-binarized"
FAST = RetryPolicy(attempts=3, initial_s=0.01, max_s=0.02)
BITS = vbin.bits_field(n.F_EMBEDDING)


@functools.cache
def _rendered(dim: int, candidates: int, paged: bool) -> dict[str, str]:
    return package.render(dim, binarized=vbin.BinarizedOptions(candidates=candidates,
                                                               paged=paged))


@functools.cache
def _plain(dim: int) -> dict[str, str]:
    return package.render(dim)


def binarized_files(dim: int = 16, candidates: int = vbin.DEFAULT_CANDIDATES,
                    paged: bool = True) -> dict[str, str]:
    """The generator's binarised package (rendered once per options: pyvespa is slow)."""
    return dict(_rendered(dim, candidates, paged))


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return int(args.func(args))


# ---------------------------------------------------------------------------- generator
@pytest.mark.parametrize(("values", "packed"), [
    ([1.0] * 8, [-1]), ([0.0] * 8, [0]), ([-1.0] * 8, [0]), ([1.0] + [0.0] * 7, [-128]),
    ([2.0, 0, 0, 0, 0, 0, 0, 1.0], [-127]), ([1.0, 0, 0, 0, 1.0, 0, 0, 1.0], [-119]),
    ([0.5, -1.2, 3.4, 0.0, -0.5, 2.3, -4.5, 1.2] * 2, [-91, -91]),
])
def test_pack_bits_as_vespa_docs(values: list[float], packed: list[int]) -> None:
    """The examples of Vespa's binarizing-vectors guide (threshold 0, big-endian, int8)."""
    assert vbin.pack_bits(values) == packed


def test_pack_bits_needs_whole_bytes() -> None:
    with pytest.raises(ValueError, match="divisible by 8"):
        vbin.pack_bits([1.0] * 12)
    with pytest.raises(ValueError, match="divisible by 8"):
        binarized_files(12)


def test_golden_binarized_package() -> None:
    files = binarized_files(512)
    for rel, text in files.items():
        assert (GOLDEN / rel).read_text() == text, (
            f"{rel}: regenerate with `clipsearch vespa package --vector-index binarized "
            f"--dim 512 --dir tests/golden/vespa-binarized`")
    assert lint_files(files, 512) == []


def test_bits_field_and_profiles_follow_the_float_ones() -> None:
    schema = parse_schema(binarized_files(16, candidates=300)[SD])
    full, bits = schema.fields[n.F_EMBEDDING], schema.fields[BITS]
    assert full.in_document and not full.hnsw and full.paged
    assert full.distance_metric == "prenormalized-angular"
    assert not bits.in_document and bits.hnsw and bits.type == "tensor<int8>(x[2])"
    assert bits.distance_metric == "hamming"
    assert bits.indexing == [f"input {n.F_EMBEDDING}", "binarize", "pack_bits", "attribute",
                             "index"]
    plain = parse_schema(_plain(16)[SD])
    for name in n.PROFILES:
        p, f = schema.resolved(name), plain.resolved(name)
        assert p.inputs[vbin.INPUT_Q_BITS] == "tensor<int8>(x[2])"
        assert p.inputs[n.INPUT_Q] == f.inputs[n.INPUT_Q]
        assert p.phases.get("global-phase") == f.phases.get("global-phase")
        assert p.match_features == f.match_features
        if name == n.PROFILE_LEXICAL:
            assert "second-phase" not in p.phases
            continue
        assert p.rerank_counts["second-phase"] == 300
        # the second phase is the float profile's first phase with the exact float closeness
        assert p.phases["second-phase"] == f.phases["first-phase"].replace(
            f"closeness(field, {n.F_EMBEDDING})", n.FN_VECTOR).replace(
            f"bm25({n.F_CAPTION})", n.FN_LEXICAL)
    assert schema.resolved(n.PROFILE_VECTOR).phases["first-phase"] == f"closeness(field, {BITS})"
    assert "paged" not in parse_schema(binarized_files(16, paged=False)[SD]).fields[
        n.F_EMBEDDING].attribute_options
    # bfloat16 re-rank cells and a cluster package take the same schema parts
    cluster = render_cluster(Topology(), 16, cell_type="bfloat16",
                             binarized=vbin.BinarizedOptions())
    assert parse_schema(cluster[SD]).fields[n.F_EMBEDDING].type == "tensor<bfloat16>(x[16])"
    assert lint_files(cluster, 16) == []


def test_every_generation_field_gets_its_bits() -> None:
    """A later generation's field (issue 14) is binarised like ``embedding``: its own
    ``_bits`` field of its own size and its ``<profile>-G`` profiles on it."""
    from clipsearch.index.vespa.generation_schema import GenerationField

    g1 = GenerationField(name="g1", dim=24)
    files = package.render(16, generations=(g1,), binarized=vbin.BinarizedOptions())
    schema = parse_schema(files[SD])
    bits = schema.fields[vbin.bits_field(g1.field)]
    assert bits.type == "tensor<int8>(x[3])" and not bits.in_document
    assert bits.indexing[0] == f"input {g1.field}" and not schema.fields[g1.field].hnsw
    vector = schema.resolved(f"{n.PROFILE_VECTOR}{g1.suffix}")
    assert vector.phases["first-phase"] == f"closeness(field, {g1.field}_bits)"
    assert vector.inputs[vbin.INPUT_Q_BITS] == "tensor<int8>(x[3])"
    assert lint_files(files, 16) == []


@pytest.mark.parametrize(("old", "new", "problem"), [
    ("tensor<int8>(x[2])", "tensor<float>(x[2])", "counts the cells that differ"),
    ("field embedding_bits type tensor<int8>(x[2])",
     "field embedding_bits type tensor<int8>(x[3])", "so x[2] cells, not x[3]"),
    ("input embedding | binarize | pack_bits", "input embedding | pack_bits",
     "put 'binarize' before it"),
    ("input embedding | binarize", "input nothing | binarize", "must start with 'input F'"),
    ("            distance-metric: prenormalized-angular\n                paged\n",
     "            distance-metric: prenormalized-angular\n", None),
    ("expression {\n                closeness(field, embedding_bits)\n            }\n        }\n"
     "        second-phase", "expression {\n                vector_score\n            }\n"
     "        }\n        second-phase", "reads the paged attribute embedding"),
    ("            query(q_bits) tensor<int8>(x[2])\n", "", "does not declare query(q_bits)"),
])
def test_lint_checks_binarized_constructs(old: str, new: str, problem: str | None) -> None:
    files = binarized_files(16)
    assert old in files[SD]
    broken = dict(files, **{SD: files[SD].replace(old, new)})
    messages = [str(p) for p in lint_files(broken, 16)]
    if problem is None:  # not paged: allowed (more memory, no disk reads)
        assert messages == []
    else:
        assert any(problem in m for m in messages), messages


def test_lint_refuses_paged_hnsw_and_undivisible_dims() -> None:
    text = _plain(12)[SD].replace(
        "            distance-metric: prenormalized-angular\n",
        "            distance-metric: prenormalized-angular\n            paged\n", 1)
    text = text.replace("    fieldset default", (
        "    field embedding_bits type tensor<int8>(x[2]) {\n"
        "        indexing: input embedding | binarize | pack_bits | attribute | index\n"
        "        attribute {\n            distance-metric: hamming\n        }\n    }\n"
        "    fieldset default"), 1)
    messages = [str(p) for p in lint_files(dict(_plain(12), **{SD: text}), 12)]
    assert any("'paged' with an HNSW index" in m for m in messages), messages
    assert any("12 dimensions, not a multiple of 8" in m for m in messages), messages


def test_setting_and_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().vespa_vector_index == "float"
    with pytest.raises(ValueError):
        Settings(vespa_vector_index="int4")  # type: ignore[arg-type]
    monkeypatch.setenv("CLIPSEARCH_VESPA_VECTOR_INDEX", "binarized")
    monkeypatch.setenv("CLIPSEARCH_VESPA_BINARIZED_CANDIDATES", "123")
    assert run_cli("vespa", "package", "--dir", str(tmp_path), "--dim", "16") == 0
    schema = parse_schema((tmp_path / SD).read_text())
    assert schema.fields[BITS].type == "tensor<int8>(x[2])"
    assert schema.resolved(n.PROFILE_VECTOR).rerank_counts["second-phase"] == 123
    assert lint_package(tmp_path, 16) == []
    assert run_cli("vespa", "package", "--dir", str(tmp_path), "--dim", "16",
                   "--vector-index", "float", "--check") == 1
    with pytest.raises(SystemExit, match="not divisible by 8"):
        run_cli("vespa", "package", "--dir", str(tmp_path), "--dim", "12")


# ---------------------------------------------------------------------------- client + loopback
DIM = 32
N_DOCS = 40


def corpus(dim: int = DIM, count: int = N_DOCS) -> list[dict[str, object]]:
    rng = np.random.default_rng(7)
    vecs = l2_normalize(rng.normal(size=(count, dim)))
    words = ["harbor boats", "green park", "river bridge", "dense houses"]
    return [{"id": f"d{i:02d}", "captions": [f"{words[i % 4]} number {i}"], "dataset": "t",
             "category": words[i % 4].split()[0], "split": "train", "image_uri": f"/{i}.png",
             "model_id": "m", "embedding": [float(x) for x in vecs[i]]} for i in range(count)]


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[LoopbackVespa, LoopbackVespa]]:
    with LoopbackVespa(dim=DIM, vector_index="binarized") as binarized, \
            LoopbackVespa(dim=DIM) as plain:
        yield binarized, plain
        assert binarized.violations == [] and plain.violations == [], (
            binarized.violations, plain.violations)


def _index(server: LoopbackVespa, candidates: int | None) -> VespaIndex:
    return VespaIndex(url=server.url, namespace="clipsearch", dim=DIM, timeout_s=5.0,
                      retry=FAST, binarized=(vbin.BinarizedQuery(candidates=candidates)
                                             if candidates else None))


@pytest.fixture(scope="module")
async def pair(servers: tuple[LoopbackVespa, LoopbackVespa]
               ) -> AsyncIterator[tuple[VespaIndex, VespaIndex]]:
    """The corpus fed once to a binarised and a float loopback (64 candidates >= corpus)."""
    binarized, plain = servers
    a, b = _index(binarized, 64), _index(plain, None)
    docs = [ImageDocument.model_validate(d) for d in corpus()]
    await a.upsert(docs)
    await b.upsert(docs)
    yield a, b
    await a.close()
    await b.close()


def query_vector(seed: int = 3) -> list[float]:
    return [float(x) for x in l2_normalize(np.random.default_rng(seed).normal(size=DIM))[0]]


@pytest.mark.asyncio(loop_scope="session")
async def test_feeding_sends_floats_only_and_the_bits_field_cannot_be_fed(
        servers: tuple[LoopbackVespa, LoopbackVespa], pair: tuple[VespaIndex, VespaIndex]
) -> None:
    binarized, _ = servers
    puts = [r for r in binarized.requests if r.method == "POST" and r.path.startswith("/doc")]
    assert len(puts) == N_DOCS and all(BITS not in r.body["fields"] for r in puts)
    resp = await pair[0].request("POST", "/document/v1/clipsearch/image/docid/x", json={
        "fields": {**{k: v for k, v in corpus()[0].items() if k != "id"}, "id": "x",
                   BITS: [0] * (DIM // 8)}})
    assert resp.status_code == 400 and BITS in resp.json()["message"]
    binarized.state.violations.clear()


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("params", [HybridParameters(),
                                    HybridParameters(fusion=Fusion.linear, alpha=0.4),
                                    HybridParameters(fusion=Fusion.score)])
async def test_enough_candidates_rank_like_float(pair: tuple[VespaIndex, VespaIndex],
                                                 params: HybridParameters) -> None:
    """With as many hamming candidates as documents, every hit is re-ranked by the float
    vectors: the same hits and scores as the float HNSW profiles (closeness parity)."""
    binarized, plain = pair
    for mode in (Mode.vector, Mode.hybrid):
        plan = SearchPlan(mode=mode, text="harbor river", vector=query_vector(), limit=20,
                          hybrid=params)
        a, b = await binarized.search(plan), await plain.search(plan)
        assert [h.id for h in a.hits] == [h.id for h in b.hits]
        assert [h.score for h in a.hits] == pytest.approx([h.score for h in b.hits], abs=1e-9)
        assert [h.scores.vector for h in a.hits] == pytest.approx(
            [h.scores.vector for h in b.hits], abs=1e-9)


@pytest.mark.asyncio(loop_scope="session")
async def test_few_candidates_rerank_the_hamming_top(
        servers: tuple[LoopbackVespa, LoopbackVespa], pair: tuple[VespaIndex, VespaIndex]
) -> None:
    binarized, _ = servers
    idx = _index(binarized, 10)
    q = query_vector(5)
    try:
        result = await idx.search(SearchPlan(mode=Mode.vector, vector=q, limit=10,
                                             candidates=10))
    finally:
        await idx.close()
    body = binarized.searches()[-1]
    assert body[f"input.{vbin.INPUT_Q_BITS}"] == vbin.pack_bits(q)
    assert body[f"input.{n.INPUT_Q}"] == q
    assert body["ranking.rerankCount"] == 10
    nn = next(x for x in walk(parse_yql(body["yql"]).where) if x.kind == "nn")
    assert (nn.field_name, nn.query_tensor, nn.target_hits) == (BITS, vbin.Q_BITS, 10)
    vecs = np.array([d["embedding"] for d in corpus()])
    q_bits = np.packbits(np.asarray(q) > 0)
    ham = np.unpackbits(np.bitwise_xor(np.packbits(vecs > 0, axis=1), q_bits), axis=1).sum(1)
    cutoff = np.sort(ham)[9]  # the 10th smallest hamming distance
    close = closeness_from_cosine(vecs @ np.asarray(q))
    got = [int(h.id[1:]) for h in result.hits]
    assert len(got) == 10 and all(ham[i] <= cutoff for i in got)
    assert [h.score for h in result.hits] == pytest.approx(close[got].tolist(), abs=1e-9)
    assert [h.score for h in result.hits] == sorted((h.score for h in result.hits), reverse=True)
    exact_top = sorted(range(N_DOCS), key=lambda i: -close[i])[:10]
    assert set(got) != set(exact_top)  # 10 of 40 by 32 bits: the binarised loss is visible


@pytest.mark.asyncio(loop_scope="session")
async def test_float_profiles_refuse_packed_queries(
        servers: tuple[LoopbackVespa, LoopbackVespa], pair: tuple[VespaIndex, VespaIndex]
) -> None:
    """A binarised client against a float package fails loudly (Vespa: unknown field)."""
    _, plain = servers
    idx = VespaIndex(url=plain.url, namespace="clipsearch", dim=DIM, timeout_s=5.0, retry=FAST,
                     binarized=vbin.BinarizedQuery(candidates=20))
    try:
        with pytest.raises(InvalidRequest, match="q_bits"):
            await idx.search(SearchPlan(mode=Mode.vector, vector=query_vector(), limit=3))
    finally:
        await idx.close()
    plain.state.violations.clear()


# ---------------------------------------------------------------------------- conformance
KEEP = {"test_vector_own_vector_first", "test_vector_scores_are_exact_closeness",
        "test_hybrid_equals_fusion_of_legs", "test_filters_exclude", "test_paging_is_consistent"}


class TestBinarizedConformance(IndexConformance):
    """A subset of the shared suite on a binarised package (search paths only)."""

    @pytest.fixture(scope="class")
    def index_factory(self, loopback_servers: list[LoopbackVespa]) -> IndexFactory:
        async def make(dim: int) -> SearchIndex:
            server = LoopbackVespa(dim=dim, vector_index="binarized").__enter__()
            loopback_servers.append(server)
            return VespaIndex(url=server.url, namespace="clipsearch", dim=dim, timeout_s=5.0,
                              retry=FAST, binarized=vbin.BinarizedQuery(candidates=40))

        return make


for _name in [t for t in dir(IndexConformance) if t.startswith("test_") and t not in KEEP]:
    setattr(TestBinarizedConformance, _name, None)  # not collected: the float suite runs them
