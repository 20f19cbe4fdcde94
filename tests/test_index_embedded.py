"""The embedded (LanceDB) engine: the shared conformance suite plus engine-specific checks."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pytest

from clipsearch.documents import ImageDocument
from clipsearch.embeddings import l2_normalize
from clipsearch.errors import BackendError, BackendUnavailable
from clipsearch.index.base import SearchIndex
from clipsearch.index.embedded import EmbeddedIndex
from clipsearch.index.embedded_filters import in_list, quote, search_sql
from clipsearch.search import Filters, Mode, SearchResult
from clipsearch.settings import Settings
from tests.index_conformance import (
    BY_ID,
    CORPUS,
    DIM,
    IndexConformance,
    IndexFactory,
    ids,
    plan,
    reference_bm25,
    unit_vector,
)


class TestEmbeddedConformance(IndexConformance):
    @pytest.fixture(scope="class")
    def index_factory(self, tmp_path_factory: pytest.TempPathFactory) -> IndexFactory:
        async def make(dim: int) -> SearchIndex:
            return EmbeddedIndex(tmp_path_factory.mktemp("embedded"), dim=dim)

        return make


# --- engine-specific behaviour -------------------------------------------------------------

def _doc(i: int, caption: str, *, dim: int = DIM, category: str = "c") -> ImageDocument:
    return ImageDocument(id=f"t:{i}", captions=[caption], dataset="t", category=category,
                         split="train", embedding=unit_vector(i, dim))


def _index(path: Path, **kw: Any) -> EmbeddedIndex:
    return EmbeddedIndex(path, dim=kw.pop("dim", DIM), **kw)


async def test_from_settings_uses_index_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, table="imgs", embedding_dim=DIM, hnsw_ef=64)
    index = EmbeddedIndex.from_settings(settings)
    await index.upsert(CORPUS[:2])
    assert index.path == tmp_path / "index" and index.dim == DIM
    assert (tmp_path / "index" / "imgs.lance").is_dir()
    await index.close()


async def test_restart_keeps_data(tmp_path: Path) -> None:
    first = _index(tmp_path)
    await first.upsert(CORPUS)
    await first.delete(["ucm:desert_1"])
    await first.close()
    second = _index(tmp_path)
    assert await second.count() == len(CORPUS) - 1
    got = await second.get("rsicd:harbor_2")
    assert got is not None and got.captions == BY_ID["rsicd:harbor_2"].captions
    hits = await second.search(plan(Mode.hybrid, text="harbor", vector=got.embedding))
    assert hits.hits[0].id == "rsicd:harbor_2"
    await second.close()


async def test_search_right_after_upsert_without_flush(tmp_path: Path) -> None:
    index = _index(tmp_path)
    await index.upsert(CORPUS)
    await index.flush()  # indexes now cover the corpus; the writes below are not indexed yet
    lighthouse = _doc(1, "a lighthouse on a cliff")
    await index.upsert([lighthouse])
    changed = BY_ID["rsicd:park_1"].model_copy(update={"captions": ["a frozen glacier"]})
    await index.upsert([changed])
    assert ids(await index.search(plan(Mode.lexical, text="lighthouse"))) == ["t:1"]
    assert ids(await index.search(plan(Mode.lexical, text="glacier"))) == ["rsicd:park_1"]
    assert "rsicd:park_1" not in ids(await index.search(plan(Mode.lexical, text="pond")))
    vec = await index.search(plan(Mode.vector, vector=unit_vector(1), limit=1))
    assert ids(vec) == ["t:1"]
    hyb = await index.search(plan(Mode.hybrid, text="lighthouse", vector=unit_vector(1)))
    assert hyb.hits[0].id == "t:1"
    assert hyb.hits[0].scores.lexical is not None and hyb.hits[0].scores.lexical > 0
    # after flush the BM25 statistics are exact again
    await index.flush()
    docs = [d for d in CORPUS if d.id != "rsicd:park_1"] + [changed, lighthouse]
    expected = reference_bm25("harbor", docs)
    result = await index.search(plan(Mode.lexical, text="harbor"))
    assert {h.id: round(h.score, 4) for h in result.hits} == {
        k: round(v, 4) for k, v in expected.items()}
    await index.close()


async def test_bm25_exact_after_delete_and_flush(tmp_path: Path) -> None:
    index = _index(tmp_path)
    await index.upsert(CORPUS)
    await index.flush()
    await index.delete(["rsicd:harbor_1", "ucm:river_1"])
    await index.flush()
    rest = [d for d in CORPUS if d.id not in {"rsicd:harbor_1", "ucm:river_1"}]
    expected = reference_bm25("green river harbor", rest)
    result = await index.search(plan(Mode.lexical, text="green river harbor", limit=100))
    got = {h.id: h.score for h in result.hits}
    assert set(got) == set(expected)
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, abs=1e-3)
    await index.close()


async def test_ann_index_after_flush_finds_own_vectors(tmp_path: Path) -> None:
    dim, n = 32, 3000
    index = _index(tmp_path, dim=dim, vector_index_min_rows=1000, hnsw_ef=100)
    vectors = l2_normalize(np.random.default_rng(0).normal(size=(n, dim)))
    docs = [ImageDocument(id=f"t:{i}", captions=[f"caption number {i}"], dataset="t",
                          embedding=vectors[i].tolist()) for i in range(n)]
    await index.upsert(docs)
    assert not await index.has_vector_index()
    await index.flush()
    assert await index.has_vector_index()
    late = ImageDocument(id="t:late", captions=["written after the index"], dataset="t",
                         embedding=unit_vector(99_999, dim))
    await index.upsert([late])  # not covered by the ANN index: found by flat scan
    for doc in [*docs[::300], late]:
        result = await index.search(plan(Mode.vector, vector=doc.embedding, limit=10))
        assert result.hits[0].id == doc.id
        assert result.hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert result.total == n + 1
    filtered = await index.search(plan(Mode.vector, vector=docs[5].embedding,
                                       filters=Filters(dataset=["other"])))
    assert filtered.hits == []
    await index.close()


async def test_concurrent_searches_during_writes(tmp_path: Path) -> None:
    index = _index(tmp_path)
    await index.upsert(CORPUS)
    await index.flush()
    stop = asyncio.Event()
    seen: list[list[int]] = [[] for _ in range(4)]

    async def reader(slot: int) -> None:
        while not stop.is_set():
            mode = list(Mode)[slot % 3]
            result = await index.search(plan(mode, text="harbor caption", limit=100,
                                              vector=BY_ID["rsicd:harbor_1"].embedding))
            assert result.hits
            seen[slot].append(await index.count())

    async def writer() -> None:
        for batch in range(5):
            await index.upsert([_doc(1000 + batch * 50 + i, f"caption {i}") for i in range(50)])
        await index.flush()
        stop.set()

    await asyncio.gather(writer(), *(reader(slot) for slot in range(4)))
    assert await index.count() == len(CORPUS) + 250
    for counts in seen:
        assert counts and counts == sorted(counts)  # never goes back to an older version
    await index.close()


_CHILD_WRITER = """
import asyncio, sys
from pathlib import Path
from clipsearch.index.embedded import EmbeddedIndex
from tests.index_conformance import DIM, unit_vector
from clipsearch.documents import ImageDocument

async def main():
    index = EmbeddedIndex(Path(sys.argv[1]), dim=DIM)
    doc = ImageDocument(id="child:1", captions=["a windmill by the sea"], dataset="child",
                        embedding=unit_vector(777))
    await index.upsert([doc])
    await index.close()

asyncio.run(main())
"""


async def test_reader_sees_writes_of_another_process(tmp_path: Path) -> None:
    reader = _index(tmp_path)
    await reader.upsert(CORPUS)
    assert await reader.search(plan(Mode.lexical, text="windmill")) == SearchResult(
        hits=[], total=0)
    root = Path(__file__).resolve().parent.parent
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CHILD_WRITER, str(tmp_path), cwd=root,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()
    assert ids(await reader.search(plan(Mode.lexical, text="windmill"))) == ["child:1"]
    assert await reader.count() == len(CORPUS) + 1
    await reader.close()


async def test_filter_values_are_escaped(tmp_path: Path) -> None:
    index = _index(tmp_path)
    odd = ImageDocument(id="t:odd", captions=["an odd label"], dataset="t", category="odd",
                        embedding=unit_vector(5))
    await index.upsert([*CORPUS, odd])
    # the index refuses labels outside LABEL_PATTERN; another program writing the table
    # directly does not, and filters must still match such a value literally
    db = await lancedb.connect_async(str(tmp_path))
    table = await db.open_table("images")
    await table.update({"category": "o'neil) OR (1=1"}, where="id = 't:odd'")
    table.close()
    db.close()
    filters = Filters.model_construct(dataset=[], category=["o'neil) OR (1=1"], split=[])
    assert await index.count(filters) == 1  # the quote matched literally
    injection = Filters.model_construct(dataset=["x' OR '1'='1"], category=[], split=[])
    assert await index.count(injection) == 0
    for mode in Mode:
        result = await index.search(plan(mode, text="harbor", vector=unit_vector(5),
                                         filters=injection, exclude_ids=["t:odd"]))
        assert result.hits == [] and result.total == 0
    await index.close()


def test_sql_literals() -> None:
    assert quote("a'b") == "'a''b'"
    assert in_list("id", ["x", "y'z"], negate=True) == "id NOT IN ('x', 'y''z')"
    with pytest.raises(ValueError):
        in_list("caption_text; drop", ["x"])
    with pytest.raises(ValueError):
        quote("a\x00b")
    assert search_sql(Filters(), []) is None
    assert search_sql(Filters(dataset=["a"], split=["b", "c"]), ["t:1"]) == (
        "((dataset IN ('a')) AND (split IN ('b', 'c'))) AND (id NOT IN ('t:1'))")


async def test_dimension_mismatch_on_reopen(tmp_path: Path) -> None:
    first = _index(tmp_path)
    await first.upsert(CORPUS[:1])
    await first.close()
    other = _index(tmp_path, dim=DIM * 2)
    with pytest.raises(BackendError, match="16-d"):
        await other.count()


async def test_unusable_directory_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    index = _index(blocker / "index")
    with pytest.raises(BackendUnavailable):
        await index.ping()


async def test_duplicate_ids_in_one_batch_keep_the_last(tmp_path: Path) -> None:
    index = _index(tmp_path, write_batch=2)
    docs = [_doc(1, "first version"), _doc(2, "other"), _doc(1, "second version")]
    assert await index.upsert(docs) == 2
    got = await index.get("t:1")
    assert got is not None and got.captions == ["second version"]
    assert await index.count() == 2
    await index.close()


async def test_hybrid_with_vector_only_reports_no_lexical_leg(tmp_path: Path) -> None:
    index = _index(tmp_path)
    await index.upsert(CORPUS)
    target = BY_ID["ucm:farmland_1"]
    result = await index.search(plan(Mode.hybrid, vector=target.embedding))
    assert result.hits[0].id == target.id
    assert all(h.scores.lexical is None and h.scores.vector is not None for h in result.hits)
    await index.close()


async def test_concurrent_first_calls_share_one_connection(tmp_path: Path) -> None:
    index = _index(tmp_path)
    counts = await asyncio.gather(*(index.count() for _ in range(8)))
    assert counts == [0] * 8
    await index.upsert(CORPUS[:3])
    assert await index.count() == 3
    await index.close()
    await index.close()  # idempotent


@pytest.mark.parametrize("candidates", [2, 5, 200])
async def test_hybrid_lexical_scores_are_exact_whether_or_not_the_leg_is_capped(
    tmp_path: Path, candidates: int
) -> None:
    """Vector hits outside the lexical window get their BM25 looked up (capped leg) or 0
    (uncapped leg: it returned every match); both equal a full lexical search's scores."""
    rng = np.random.default_rng(7)
    words = ["river", "field", "road", "lake", "forest"]
    docs = [_doc(i, " ".join(rng.choice(words, size=3))) for i in range(40)]
    index = _index(tmp_path)
    await index.upsert(docs)
    await index.flush()
    full = await index.search(plan(Mode.lexical, text="river lake", limit=100, candidates=500))
    truth = {h.id: h.scores.lexical for h in full.hits}
    query = l2_normalize(rng.normal(size=len(docs[0].embedding)))[0].tolist()
    result = await index.search(plan(Mode.hybrid, text="river lake", vector=query, limit=100,
                                     candidates=candidates))
    assert result.hits
    for h in result.hits:
        assert h.scores.lexical == pytest.approx(truth.get(h.id, 0.0), abs=1e-4), h.id
    await index.close()
