"""The behaviour every ``SearchIndex`` must show, as one reusable pytest suite.

How a backend plugs in: subclass ``IndexConformance`` in a ``tests/test_*.py`` module and
provide a CLASS-scoped (or wider) ``index_factory`` fixture that returns an async callable
``make(dim) -> SearchIndex`` giving a fresh, EMPTY index for ``dim``-d embeddings on every call
(the suite calls ``ensure_ready`` and, at teardown, ``close``). Read-only tests share one loaded
index per class; tests that write get their own. Tests run on pytest-asyncio's session loop::

    from tests.index_conformance import IndexConformance

    class TestMyEngine(IndexConformance):
        @pytest.fixture(scope="class")
        def index_factory(self, tmp_path_factory):
            async def make(dim: int) -> SearchIndex:
                return MyIndex(tmp_path_factory.mktemp("index"), dim=dim)
            return make

Every test of the base class then runs against that engine. The suite writes a small,
hand-written corpus (``CORPUS``: captions chosen so that a reference BM25 can be computed
here without a stemmer, labels for filters, deterministic unit vectors from numpy), calls
``flush()`` once after writing (an engine whose BM25 statistics lag behind writes must make
them exact there; a no-op is fine for engines that are always exact), and checks the contract
of ``clipsearch.index.base.SearchIndex``: BM25 with k1 1.2, b 0.75 and Lucene's idf over
lower-cased, English-stemmed text with stop words kept; closeness ``1 / (2 - cos)``; fusion
exactly as ``clipsearch.fusion``; prefilters; paging; errors.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import ClassVar

import numpy as np
import pytest

from clipsearch.documents import DocumentBatch, DocumentFields, ImageDocument
from clipsearch.embeddings import l2_normalize
from clipsearch.errors import VectorDimensionError
from clipsearch.fusion import Candidate, closeness_from_cosine, fused_scores
from clipsearch.index.base import GenerationalIndex, SearchIndex
from clipsearch.index.generations import (
    DimensionChange,
    EmbeddingSpaceMismatch,
    GenerationInUse,
    GenerationNotReady,
    GenerationState,
    UnknownGeneration,
)
from clipsearch.search import (
    Filters,
    Fusion,
    HybridParameters,
    Mode,
    SearchPlan,
    SearchResult,
)

DIM = 16
K1, B = 1.2, 0.75
BM25_TOL = 1e-3
CLOSENESS_TOL = 1e-4

IndexFactory = Callable[[int], Awaitable[SearchIndex]]

# id -> (captions, dataset, category, split). Words used in reference-BM25 queries appear in
# exactly one surface form in the corpus, so counting surface forms equals counting stems.
_CORPUS_SPEC: dict[str, tuple[list[str], str, str, str]] = {
    "rsicd:airport_1": (["an airport with two planes parked near the terminal"],
                        "rsicd", "airport", "train"),
    "rsicd:airport_2": (["several airports seen from above"], "rsicd", "airport", "val"),
    "rsicd:park_1": (["a green park with trees and a pond"], "rsicd", "park", "train"),
    "rsicd:river_1": (["the river flows under a stone bridge"], "rsicd", "river", "train"),
    "rsicd:harbor_1": (["boats in a busy harbor"], "rsicd", "harbor", "test"),
    "rsicd:harbor_2": (["a harbor with cranes and containers", "the harbor is large"],
                       "rsicd", "harbor", "train"),
    "rsicd:residential_1": (["dense residential area with small houses"],
                            "rsicd", "residential", "test"),
    "rsicd:park_2": (["green trees around a quiet lake"], "rsicd", "park", "test"),
    "ucm:river_1": (["a long bridge over the wide river"], "ucm", "river", "train"),
    "ucm:desert_1": (["the desert is dry and empty"], "ucm", "desert", "test"),
    "ucm:farmland_1": (["farmland with green fields near a river"], "ucm", "farmland", "test"),
    "ucm:parking_1": (["a parking lot full of cars", "many cars in rows"],
                      "ucm", "parking", "train"),
}


def unit_vector(seed: int, dim: int = DIM) -> list[float]:
    raw = np.random.default_rng(seed).normal(size=dim)
    return [float(x) for x in l2_normalize(raw)[0]]


def _make_corpus() -> list[ImageDocument]:
    return [
        ImageDocument(
            id=doc_id, captions=captions, dataset=dataset, category=category, split=split,
            image_uri=f"/images/{doc_id.replace(':', '/')}.jpg", model_id="test-model",
            embedding=unit_vector(1000 + i),
        )
        for i, (doc_id, (captions, dataset, category, split)) in enumerate(_CORPUS_SPEC.items())
    ]


CORPUS: list[ImageDocument] = _make_corpus()
BY_ID = {d.id: d for d in CORPUS}


def corpus_batch() -> DocumentBatch:
    """``CORPUS`` as one batch: plain fields and a float32 matrix, as the feeder sends it."""
    fields = [DocumentFields(**d.model_dump(exclude={"embedding"})) for d in CORPUS]
    return DocumentBatch(fields, np.array([d.embedding for d in CORPUS], dtype=np.float32))


def tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def reference_bm25(query: str, docs: list[ImageDocument]) -> dict[str, float]:
    """Textbook BM25 (Lucene idf, k1 1.2, b 0.75) of every doc matching a query term.

    Terms are compared by surface form: valid for the corpus words the tests query. Every
    occurrence of a query term adds its score (a repeated word counts twice), as Vespa's
    bm25 rank feature and the embedded engine's full-text search do.
    """
    doc_tokens = {d.id: tokens(d.caption_text) for d in docs}
    n = len(docs)
    avgdl = sum(len(t) for t in doc_tokens.values()) / n
    scores: dict[str, float] = {}
    for term in tokens(query):
        df = sum(term in toks for toks in doc_tokens.values())
        if df == 0:
            continue
        idf = math.log(1.0 + (n - df + 0.5) / (df + 0.5))
        for doc_id, toks in doc_tokens.items():
            tf = toks.count(term)
            if tf:
                norm = tf + K1 * (1.0 - B + B * len(toks) / avgdl)
                scores[doc_id] = scores.get(doc_id, 0.0) + idf * tf * (K1 + 1.0) / norm
    return scores


def exact_closeness(query: list[float], doc: ImageDocument) -> float:
    cos = float(np.dot(np.asarray(query, np.float64), np.asarray(doc.embedding, np.float64)))
    return float(closeness_from_cosine(np.asarray(cos)))


def plan(mode: Mode, **kw: object) -> SearchPlan:
    return SearchPlan.model_validate({"mode": mode, **kw})


def ids(result: SearchResult) -> list[str]:
    return [h.id for h in result.hits]


def matches(doc: ImageDocument, filters: Filters) -> bool:
    return all(getattr(doc, field) in values for field, values in filters.items())


NASTY_TEXTS = [
    'harbor"', '"harbor', "harbor:boats", "(harbor", "harbor)", "harbor AND OR NOT",
    "+harbor -boats", "harbor~2", "harbor^3", "title:harbor", "harbor*", "[harbor TO x]",
    "{harbor}", "harbor\\", "harbor/boats", "harbor's", "über café 東京 harbor", "!!!",
    "(((", "\\", "*", "?", "&&", "||", "--", "the", "a the and of", "'; DROP TABLE images; --",
    "x" * 300, "harbor " * 100,
]


@pytest.mark.asyncio(loop_scope="session")
class IndexConformance:
    """Subclass and provide ``index_factory`` (see the module docstring)."""

    dim: ClassVar[int] = DIM

    @pytest.fixture
    async def fresh(self, index_factory: IndexFactory) -> AsyncIterator[SearchIndex]:
        index = await index_factory(self.dim)
        await index.ensure_ready()
        try:
            yield index
        finally:
            await index.close()

    @pytest.fixture
    async def loaded(self, fresh: SearchIndex) -> SearchIndex:
        """The corpus in a fresh index, for tests that change it."""
        assert await fresh.upsert(CORPUS) == len(CORPUS)
        await fresh.flush()
        return fresh

    @pytest.fixture(scope="class")
    async def corpus_index(self, index_factory: IndexFactory) -> AsyncIterator[SearchIndex]:
        """The corpus in one index shared by the read-only tests of the class."""
        index = await index_factory(self.dim)
        await index.ensure_ready()
        assert await index.upsert(CORPUS) == len(CORPUS)
        await index.flush()
        try:
            yield index
        finally:
            await index.close()

    # --- documents ---------------------------------------------------------------------

    async def test_upsert_get_roundtrip(self, corpus_index: SearchIndex) -> None:
        assert corpus_index.dim == DIM
        for doc in CORPUS:
            got = await corpus_index.get(doc.id)
            assert got is not None
            assert got.model_dump(exclude={"embedding"}) == doc.model_dump(exclude={"embedding"})
            assert np.allclose(got.embedding, doc.embedding, atol=1e-6)
        assert await corpus_index.get("rsicd:missing") is None

    async def test_upsert_is_idempotent_and_last_version_wins(self, loaded: SearchIndex) -> None:
        doc = BY_ID["ucm:desert_1"]
        changed = doc.model_copy(update={"captions": ["a volcano crater"], "category": "volcano",
                                         "embedding": unit_vector(7)})
        assert await loaded.upsert([changed]) == 1
        assert await loaded.upsert([changed]) == 1
        assert await loaded.count() == len(CORPUS)
        got = await loaded.get(doc.id)
        assert got is not None and got.captions == ["a volcano crater"]
        assert got.category == "volcano"
        assert np.allclose(got.embedding, unit_vector(7), atol=1e-6)
        assert ids(await loaded.search(plan(Mode.lexical, text="volcano"))) == [doc.id]
        assert doc.id not in ids(await loaded.search(plan(Mode.lexical, text="desert")))
        assert await loaded.count(Filters(category=["desert"])) == 0

    async def test_delete(self, loaded: SearchIndex) -> None:
        gone = "rsicd:park_1"
        assert await loaded.existing_ids([gone, "rsicd:nope"]) == {gone}
        assert await loaded.delete([gone, "rsicd:nope"]) == 1
        assert await loaded.delete([gone]) == 0
        assert await loaded.get(gone) is None
        assert await loaded.count() == len(CORPUS) - 1
        assert await loaded.existing_ids([gone]) == set()
        assert gone not in ids(await loaded.search(plan(Mode.lexical, text="pond park")))
        vec = await loaded.search(plan(Mode.vector, vector=BY_ID[gone].embedding, limit=20))
        assert gone not in ids(vec)

    async def test_existing_ids(self, corpus_index: SearchIndex) -> None:
        wanted = [d.id for d in CORPUS[:5]] + ["x:1", "x:2"]
        assert await corpus_index.existing_ids(wanted) == {d.id for d in CORPUS[:5]}
        assert await corpus_index.existing_ids([]) == set()

    async def test_ids_differing_only_by_case_are_different(self, loaded: SearchIndex) -> None:
        """Ids are case-sensitive everywhere: look-up, delete, exclusion (Vespa: the id
        attribute is ``match: cased``, so ``id in (...)`` is not lower-cased)."""
        base = BY_ID["rsicd:harbor_1"]
        upper = base.model_copy(update={"id": "RSICD:Harbor_1", "captions": ["a red tugboat"]})
        await loaded.upsert([upper])
        await loaded.flush()
        assert await loaded.existing_ids(["rsicd:harbor_1", "RSICD:Harbor_1", "Rsicd:harbor_1"]
                                         ) == {"rsicd:harbor_1", "RSICD:Harbor_1"}
        got = await loaded.get("RSICD:Harbor_1")
        assert got is not None and got.captions == ["a red tugboat"]
        assert await loaded.get("rsicd:HARBOR_1") is None
        excluded = await loaded.search(plan(Mode.vector, vector=base.embedding, limit=3,
                                            exclude_ids=["rsicd:harbor_1"]))
        assert "RSICD:Harbor_1" in ids(excluded) and "rsicd:harbor_1" not in ids(excluded)
        assert await loaded.delete(["rsicd:HARBOR_1"]) == 0
        assert await loaded.delete(["RSICD:Harbor_1"]) == 1
        await loaded.flush()
        assert await loaded.existing_ids(["rsicd:harbor_1", "RSICD:Harbor_1"]
                                         ) == {"rsicd:harbor_1"}

    async def test_count_with_filters(self, corpus_index: SearchIndex) -> None:
        cases = [
            Filters(),
            Filters(dataset=["ucm"]),
            Filters(category=["park", "river"]),
            Filters(dataset=["ucm"], category=["river", "park"]),
            Filters(dataset=["rsicd"], split=["test"]),
            Filters(dataset=["nothing"]),
        ]
        for filters in cases:
            expected = sum(matches(d, filters) for d in CORPUS)
            assert await corpus_index.count(filters) == expected, filters
        assert await corpus_index.count(None) == len(CORPUS)

    async def test_hits_carry_document_fields(self, corpus_index: SearchIndex) -> None:
        result = await corpus_index.search(plan(Mode.lexical, text="harbor"))
        assert result.hits
        for hit in result.hits:
            assert hit.document.model_dump() == BY_ID[hit.id].model_dump(exclude={"embedding"})

    # --- lexical -----------------------------------------------------------------------

    async def test_lexical_finds_caption_word(self, corpus_index: SearchIndex) -> None:
        result = await corpus_index.search(plan(Mode.lexical, text="pond"))
        assert ids(result) == ["rsicd:park_1"]
        assert result.hits[0].scores.lexical is not None and result.hits[0].scores.lexical > 0
        assert result.hits[0].scores.vector is None
        assert result.total == 1
        upper = await corpus_index.search(plan(Mode.lexical, text="POND"))
        assert ids(upper) == ["rsicd:park_1"]

    async def test_lexical_stemming(self, corpus_index: SearchIndex) -> None:
        singular = set(ids(await corpus_index.search(plan(Mode.lexical, text="airport"))))
        plural = set(ids(await corpus_index.search(plan(Mode.lexical, text="airports"))))
        assert singular == plural == {"rsicd:airport_1", "rsicd:airport_2"}
        cars = set(ids(await corpus_index.search(plan(Mode.lexical, text="car"))))
        assert cars == {"ucm:parking_1"}

    async def test_lexical_stop_words_are_searchable(self, corpus_index: SearchIndex) -> None:
        result = await corpus_index.search(plan(Mode.lexical, text="the", limit=100))
        expected = {d.id for d in CORPUS if "the" in tokens(d.caption_text)}
        assert len(expected) >= 4
        assert set(ids(result)) == expected

    @pytest.mark.parametrize("query", ["harbor", "green river", "green river harbor bridge",
                                       "the harbor", "trees and a lake", "harbor harbor",
                                       "river green river"])
    async def test_bm25_equals_reference(self, corpus_index: SearchIndex, query: str) -> None:
        expected = reference_bm25(query, CORPUS)
        result = await corpus_index.search(plan(Mode.lexical, text=query, limit=100))
        got = {h.id: h.score for h in result.hits}
        assert set(got) == set(expected)
        for doc_id, score in expected.items():
            assert got[doc_id] == pytest.approx(score, abs=BM25_TOL), doc_id
        for hit in result.hits:
            assert hit.scores.lexical == pytest.approx(hit.score)
        scores = [h.score for h in result.hits]
        assert scores == sorted(scores, reverse=True)

    async def test_lexical_no_match(self, corpus_index: SearchIndex) -> None:
        result = await corpus_index.search(plan(Mode.lexical, text="zeppelin"))
        assert result.hits == [] and result.total == 0

    @pytest.mark.parametrize("text", NASTY_TEXTS)
    async def test_special_characters_are_plain_text(self, corpus_index: SearchIndex,
                                                     text: str) -> None:
        result = await corpus_index.search(plan(Mode.lexical, text=text, limit=100))
        if "harbor" in tokens(text):
            assert {"rsicd:harbor_1", "rsicd:harbor_2"} <= set(ids(result))
        hybrid = await corpus_index.search(plan(Mode.hybrid, text=text, vector=unit_vector(1)))
        assert len(hybrid.hits) == 10

    # --- vector ------------------------------------------------------------------------

    async def test_vector_own_vector_first(self, corpus_index: SearchIndex) -> None:
        for doc in CORPUS:
            result = await corpus_index.search(plan(Mode.vector, vector=doc.embedding, limit=3))
            top = result.hits[0]
            assert top.id == doc.id
            assert top.score == pytest.approx(1.0, abs=CLOSENESS_TOL)
            assert top.scores.vector == pytest.approx(1.0, abs=CLOSENESS_TOL)
            assert top.scores.lexical is None

    async def test_vector_scores_are_exact_closeness(self, corpus_index: SearchIndex) -> None:
        query = unit_vector(42)
        result = await corpus_index.search(plan(Mode.vector, vector=query, limit=100))
        assert len(result.hits) == len(CORPUS)
        assert result.total == len(CORPUS)
        expected = sorted(CORPUS, key=lambda d: -exact_closeness(query, d))
        assert ids(result) == [d.id for d in expected]
        for hit in result.hits:
            assert hit.score == pytest.approx(exact_closeness(query, BY_ID[hit.id]),
                                              abs=CLOSENESS_TOL)

    @pytest.mark.parametrize("mode", [Mode.vector, Mode.hybrid])
    async def test_wrong_dimension_raises(self, corpus_index: SearchIndex, mode: Mode) -> None:
        with pytest.raises(VectorDimensionError):
            await corpus_index.search(plan(mode, text="harbor", vector=unit_vector(1, DIM + 1)))

    async def test_upsert_wrong_dimension_writes_nothing(self, loaded: SearchIndex) -> None:
        good = BY_ID["ucm:desert_1"].model_copy(update={"id": "ucm:new_1"})
        bad = good.model_copy(update={"id": "ucm:new_2", "embedding": unit_vector(3, DIM * 2)})
        with pytest.raises(VectorDimensionError):
            await loaded.upsert([good, bad])
        assert await loaded.count() == len(CORPUS)
        assert await loaded.get("ucm:new_1") is None

    # --- the batch write path (DocumentBatch) ---------------------------------------------

    async def test_upsert_batch_equals_upsert(self, fresh: SearchIndex,
                                              corpus_index: SearchIndex) -> None:
        """The corpus written as one batch (fields + a float32 matrix) reads back and ranks
        exactly like the corpus written document by document."""
        assert await fresh.upsert_batch(corpus_batch()) == len(CORPUS)
        await fresh.flush()
        assert await fresh.count() == len(CORPUS)
        for doc in CORPUS:
            got = await fresh.get(doc.id)
            assert got is not None
            assert got.model_dump(exclude={"embedding"}) == doc.model_dump(exclude={"embedding"})
            assert np.allclose(got.embedding, doc.embedding, atol=1e-6)
        for p in (plan(Mode.lexical, text="harbor river"),
                  plan(Mode.vector, vector=unit_vector(3), limit=12),
                  plan(Mode.hybrid, text="green trees", vector=unit_vector(4), limit=12),
                  plan(Mode.hybrid, text="river", vector=unit_vector(5),
                       filters=Filters(dataset=["ucm"]))):
            batch_result, docs_result = await fresh.search(p), await corpus_index.search(p)
            assert ids(batch_result) == ids(docs_result)
            for a, b in zip(batch_result.hits, docs_result.hits, strict=True):
                assert a.score == pytest.approx(b.score, abs=1e-6)

    async def test_upsert_batch_duplicate_ids_keep_the_last(self, loaded: SearchIndex) -> None:
        doc = BY_ID["rsicd:park_1"]
        older = doc.model_copy(update={"captions": ["an old volcano"]})
        newer = doc.model_copy(update={"captions": ["a glacier"], "category": "glacier"})
        other = DocumentFields(id="rsicd:glacier_9", captions=["another glacier"],
                               dataset="rsicd", category="glacier")
        batch = DocumentBatch([older, other, newer],
                              [unit_vector(20), unit_vector(21), unit_vector(22)])
        assert await loaded.upsert_batch(batch) == 2
        assert await loaded.count() == len(CORPUS) + 1
        got = await loaded.get(doc.id)
        assert got is not None and got.captions == ["a glacier"] and got.category == "glacier"
        assert np.allclose(got.embedding, unit_vector(22), atol=1e-6)
        assert ids(await loaded.search(plan(Mode.lexical, text="volcano"))) == []
        assert await loaded.count(Filters(category=["glacier"])) == 2
        again = await loaded.upsert_batch(batch)  # idempotent
        assert again == 2 and await loaded.count() == len(CORPUS) + 1

    async def test_upsert_batch_wrong_dimension_writes_nothing(self,
                                                               loaded: SearchIndex) -> None:
        new = DocumentFields(id="ucm:new_1", captions=["new"], dataset="ucm")
        with pytest.raises(VectorDimensionError):
            await loaded.upsert_batch(DocumentBatch([new], [unit_vector(3, DIM * 2)]))
        assert await loaded.count() == len(CORPUS)
        assert await loaded.get("ucm:new_1") is None

    async def test_upsert_batch_empty(self, fresh: SearchIndex) -> None:
        assert await fresh.upsert_batch(DocumentBatch([], np.zeros((0, DIM), np.float32))) == 0
        assert await fresh.count() == 0

    # --- filters -----------------------------------------------------------------------

    @pytest.mark.parametrize("mode", list(Mode))
    @pytest.mark.parametrize("filters", [
        Filters(dataset=["ucm"]),
        Filters(category=["harbor", "park"]),
        Filters(dataset=["rsicd"], split=["test", "val"]),
        Filters(dataset=["nothing"]),
    ])
    async def test_filters_exclude(self, corpus_index: SearchIndex, mode: Mode,
                                   filters: Filters) -> None:
        query = plan(mode, text="green harbor river the a", vector=unit_vector(5), limit=100,
                     filters=filters)
        result = await corpus_index.search(query)
        allowed = {d.id for d in CORPUS if matches(d, filters)}
        assert set(ids(result)) <= allowed
        if mode != Mode.lexical:
            assert set(ids(result)) == allowed
            assert result.total == len(allowed)
        else:  # a prefilter: every matching allowed doc, scored as without the filter
            unfiltered = await corpus_index.search(query.model_copy(update={"filters": Filters()}))
            expected = {h.id: h.score for h in unfiltered.hits if h.id in allowed}
            assert {h.id: round(h.score, 4) for h in result.hits} == {
                k: round(v, 4) for k, v in expected.items()}

    @pytest.mark.parametrize("mode", list(Mode))
    async def test_exclude_ids(self, corpus_index: SearchIndex, mode: Mode) -> None:
        target = BY_ID["rsicd:harbor_2"]
        base = {"text": "harbor", "vector": target.embedding, "limit": 100}
        before = await corpus_index.search(plan(mode, **base))
        assert target.id in ids(before)
        after = await corpus_index.search(plan(mode, exclude_ids=[target.id, "x:unknown"], **base))
        assert target.id not in ids(after)
        assert set(ids(after)) == set(ids(before)) - {target.id}

    # --- hybrid ------------------------------------------------------------------------

    async def _legs(self, index: SearchIndex, text: str,
                    vector: list[float]) -> tuple[dict[str, float], dict[str, float]]:
        lex = await index.search(plan(Mode.lexical, text=text, limit=100))
        vec = await index.search(plan(Mode.vector, vector=vector, limit=100))
        return {h.id: h.score for h in lex.hits}, {h.id: h.score for h in vec.hits}

    @pytest.mark.parametrize("params", [
        HybridParameters(),
        HybridParameters(fusion=Fusion.rrf, rrf_k=10),
        HybridParameters(fusion=Fusion.linear, alpha=0.3),
        HybridParameters(fusion=Fusion.rrf_textbook, rrf_k=10),
        HybridParameters(fusion=Fusion.score, alpha=0.4, saturation=2.0),
    ])
    async def test_hybrid_equals_fusion_of_legs(self, corpus_index: SearchIndex,
                                                params: HybridParameters) -> None:
        text, vector = "green river harbor", unit_vector(11)
        lexical, closeness = await self._legs(corpus_index, text, vector)
        result = await corpus_index.search(plan(Mode.hybrid, text=text, vector=vector, limit=100,
                                          hybrid=params))
        # the window (candidates >= corpus) covers every document
        assert set(ids(result)) == {d.id for d in CORPUS}
        for hit in result.hits:
            assert hit.scores.lexical == pytest.approx(lexical.get(hit.id, 0.0), abs=BM25_TOL)
            assert hit.scores.vector == pytest.approx(closeness[hit.id], abs=CLOSENESS_TOL)
        candidates = [Candidate(h.id, h.scores.lexical or 0.0, h.scores.vector or 0.0)
                      for h in result.hits]
        expected = fused_scores(candidates, params)
        for hit, score in zip(result.hits, expected.tolist(), strict=True):
            assert hit.score == pytest.approx(score, abs=1e-9)
        scores = [h.score for h in result.hits]
        assert scores == sorted(scores, reverse=True)
        if params.fusion == Fusion.rrf:  # each leg's best hit leads the fused list
            top_lex = max(lexical, key=lambda k: lexical[k])
            top_vec = max(closeness, key=lambda k: closeness[k])
            assert {top_lex, top_vec} <= set(ids(result)[:4])

    async def test_hybrid_small_window_contains_both_legs_top(
        self, corpus_index: SearchIndex
    ) -> None:
        text, vector = "harbor", unit_vector(12)
        lexical, closeness = await self._legs(corpus_index, text, vector)
        result = await corpus_index.search(plan(Mode.hybrid, text=text, vector=vector, candidates=3,
                                          limit=10))
        top_lex = max(lexical, key=lambda k: lexical[k])
        top_vec = max(closeness, key=lambda k: closeness[k])
        assert {top_lex, top_vec} <= set(ids(result))
        for hit in result.hits:
            assert hit.scores.lexical == pytest.approx(lexical.get(hit.id, 0.0), abs=BM25_TOL)

    @pytest.mark.parametrize(("alpha", "leg"), [(0.0, "lexical"), (1.0, "vector")])
    async def test_linear_alpha_extremes_follow_one_leg(
        self, corpus_index: SearchIndex, alpha: float, leg: str
    ) -> None:
        text, vector = "green river harbor bridge", unit_vector(13)
        lexical, closeness = await self._legs(corpus_index, text, vector)
        result = await corpus_index.search(plan(
            Mode.hybrid, text=text, vector=vector, limit=100,
            hybrid=HybridParameters(fusion=Fusion.linear, alpha=alpha)))
        reference = lexical if leg == "lexical" else closeness
        ranked = [i for i in ids(result) if i in reference]
        expected = sorted(reference, key=lambda k: (-reference[k], k))
        assert ranked[: len(expected)] == expected
        assert ids(result)[: len(expected)] == expected

    async def test_hybrid_without_lexical_match(self, corpus_index: SearchIndex) -> None:
        vector = BY_ID["ucm:desert_1"].embedding
        result = await corpus_index.search(plan(Mode.hybrid, text="zeppelin", vector=vector))
        assert result.hits[0].id == "ucm:desert_1"
        assert all(h.scores.lexical == 0.0 for h in result.hits)

    async def test_linear_constant_leg_normalises_to_half(self, corpus_index: SearchIndex
                                                          ) -> None:
        """A leg constant over the window (no term matched) is 0.5 after normalize_linear,
        as Vespa's LinearNormalizer makes it (issue 17 item 2)."""
        alpha = 0.3
        result = await corpus_index.search(plan(
            Mode.hybrid, text="zeppelin", vector=BY_ID["ucm:desert_1"].embedding, limit=100,
            hybrid=HybridParameters(fusion=Fusion.linear, alpha=alpha)))
        vec = np.array([h.scores.vector or 0.0 for h in result.hits])
        norm = (vec - vec.min()) / (vec.max() - vec.min())
        for hit, n in zip(result.hits, norm.tolist(), strict=True):
            assert hit.score == pytest.approx(alpha * n + (1 - alpha) * 0.5, abs=1e-6)

    # --- paging ------------------------------------------------------------------------

    @pytest.mark.parametrize("mode", list(Mode))
    async def test_paging_is_consistent(self, corpus_index: SearchIndex, mode: Mode) -> None:
        base = {"text": "the a green river harbor with", "vector": unit_vector(21)}
        whole = await corpus_index.search(plan(mode, limit=9, **base))
        pages: list[str] = []
        for offset in (0, 3, 6):
            page = await corpus_index.search(plan(mode, limit=3, offset=offset, **base))
            assert page.total == whole.total
            pages.extend(ids(page))
        assert pages == ids(whole)
        assert len(set(pages)) == len(pages) == 9
        beyond = await corpus_index.search(plan(mode, limit=5, offset=len(CORPUS), **base))
        assert beyond.hits == []

    # --- empty index -------------------------------------------------------------------

    async def test_empty_index(self, fresh: SearchIndex) -> None:
        assert await fresh.count() == 0
        assert await fresh.get("rsicd:x") is None
        assert await fresh.delete(["rsicd:x"]) == 0
        for mode in Mode:
            result = await fresh.search(plan(mode, text="harbor", vector=unit_vector(1)))
            assert result.hits == [] and result.total == 0
        await fresh.ping()


# --- generations (engines implementing ``GenerationalIndex``) ---------------------------------

SPACE_A, SPACE_B = "a" * 64, "b" * 64


@pytest.mark.asyncio(loop_scope="session")
class GenerationConformance:
    """Subclass (beside ``IndexConformance``) for engines that implement
    ``clipsearch.index.base.GenerationalIndex``; the same ``index_factory`` fixture."""

    @pytest.fixture
    async def gens(self, index_factory: IndexFactory) -> AsyncIterator[GenerationalIndex]:
        index = await index_factory(DIM)
        assert isinstance(index, GenerationalIndex)
        await index.ensure_ready()
        try:
            yield index
        finally:
            await index.close()

    async def test_a_plain_index_is_one_active_generation(self,
                                                          gens: GenerationalIndex) -> None:
        await gens.upsert(CORPUS[:3])
        [g0] = await gens.generations()
        assert (g0.name, g0.active, g0.state, g0.dim, g0.documents) == (
            "g0", True, GenerationState.complete, DIM, 3)
        assert (await gens.active_generation()).name == "g0"

    async def test_new_generation_is_built_beside_the_active_one(
            self, gens: GenerationalIndex) -> None:
        await gens.upsert(CORPUS)
        await gens.flush()
        g1 = await gens.create_generation(model_id="m2", space=SPACE_B, dim=DIM + 2,
                                          expected=4)
        assert g1.state == GenerationState.building and g1.name != "g0"
        view = gens.at_generation(g1.name)
        assert view.dim == DIM + 2
        new_docs = [d.model_copy(update={"embedding": unit_vector(7 + i, DIM + 2),
                                         "model_id": "m2"}) for i, d in enumerate(CORPUS[:2])]
        await view.upsert(new_docs)
        await view.flush()
        # the active generation is untouched: same dim, same documents, same answers
        assert gens.dim == DIM and await gens.count() == len(CORPUS)
        hits = await gens.search(plan(Mode.vector, vector=CORPUS[5].embedding, limit=1))
        assert ids(hits) == [CORPUS[5].id]
        with pytest.raises(GenerationNotReady, match=r"2 of 4 documents \(50%\)"):
            await gens.activate_generation(g1.name)
        assert (await gens.active_generation()).name == "g0"
        await gens.complete_generation(g1.name)
        await gens.activate_generation(g1.name)
        assert gens.dim == DIM + 2 and await gens.count() == 2
        got = await gens.get(CORPUS[0].id)
        assert got is not None and got.model_id == "m2"
        listed = {g.name: g for g in await gens.generations()}
        assert listed[g1.name].active and not listed["g0"].active
        assert listed["g0"].documents == len(CORPUS) and listed[g1.name].documents == 2
        # rollback
        await gens.activate_generation("g0")
        assert gens.dim == DIM and await gens.count() == len(CORPUS)

    async def test_drop_only_inactive_and_unknown_names(self, gens: GenerationalIndex) -> None:
        await gens.upsert(CORPUS[:2])
        g1 = await gens.create_generation(model_id="m2", space=SPACE_B, dim=DIM)
        with pytest.raises(GenerationInUse):
            await gens.drop_generation("g0")
        for call in (gens.activate_generation, gens.drop_generation, gens.generation):
            with pytest.raises(UnknownGeneration, match="nope"):
                await call("nope")
        with pytest.raises(UnknownGeneration):
            gens.at_generation("nope")
        await gens.drop_generation(g1.name)
        assert [g.name for g in await gens.generations()] == ["g0"]
        assert await gens.count() == 2
        with pytest.raises(GenerationInUse):
            await gens.create_generation(model_id=None, space=None, dim=DIM, name="g0")

    async def test_vectors_of_another_space_are_refused(self, gens: GenerationalIndex) -> None:
        recorded = await gens.claim_space("g0", model_id="m1", space=SPACE_A, dim=DIM)
        assert recorded.space == SPACE_A  # an empty generation takes the first space
        await gens.upsert(CORPUS[:3])
        with pytest.raises(EmbeddingSpaceMismatch, match="reindex") as err:
            await gens.claim_space("g0", model_id="m2", space=SPACE_B, dim=DIM)
        assert err.value.reason == "embedding_space_mismatch"
        assert "clip-bbbb" in err.value.message and "clip-aaaa" in err.value.message
        with pytest.raises(DimensionChange, match="own generation"):
            await gens.claim_space("g0", model_id="m1", space=SPACE_A, dim=DIM * 2)
        assert await gens.count() == 3
        assert (await gens.claim_space("g0", model_id="m1", space=SPACE_A, dim=DIM)).space == (
            SPACE_A)

    async def test_unrecorded_space_is_adopted_only_from_the_same_model(
            self, gens: GenerationalIndex) -> None:
        await gens.upsert(CORPUS[:3])  # model_id "test-model", no space recorded
        with pytest.raises(EmbeddingSpaceMismatch, match="test-model"):
            await gens.claim_space("g0", model_id="other", space=SPACE_B, dim=DIM)
        gen = await gens.claim_space("g0", model_id="test-model", space=SPACE_A, dim=DIM)
        assert gen.space == SPACE_A

    async def test_scan_fields_and_ids(self, gens: GenerationalIndex) -> None:
        await gens.upsert(CORPUS)
        fields = await gens.scan_fields("g0")
        assert sorted(f.id for f in fields) == sorted(BY_ID)
        assert await gens.ids("g0", filters=Filters(dataset=["ucm"])) == {
            d.id for d in CORPUS if d.dataset == "ucm"}
