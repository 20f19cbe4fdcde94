"""Search legs over a LanceDB table and their fusion (the embedded engine's ``search``).

* lexical leg: native FTS (BM25, k1 1.2, b 0.75) with a ``MatchQuery``: the user's text is
  tokenised by the index's analyzer as plain terms and never parsed as query syntax.
* vector leg: nearest neighbours by cosine (HNSW when the table has an ANN index, an exact flat
  scan otherwise); every candidate's closeness is then recomputed exactly from its stored
  float32 embedding, so the score never carries the index's quantisation error.
* hybrid: one call per leg (``plan.window`` candidates each), the union of both, the missing
  leg score of each candidate filled in (lexical: an FTS query restricted to the vector hits'
  ids, run while the lexical leg still runs, 0 when no term matched; vector: exact closeness
  from the stored embedding), then ``clipsearch.fusion.fuse``.
Filters and ``exclude_ids`` are prefilters on every call.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from lancedb.query import FullTextOperator, MatchQuery
from lancedb.table import AsyncTable

from clipsearch.embeddings import check_dimension, l2_normalize
from clipsearch.fusion import Candidate, closeness_from_cosine, fuse
from clipsearch.index.embedded_filters import and_all, in_list, search_sql
from clipsearch.index.embedded_schema import (
    CAPTION_TEXT,
    EMBEDDING,
    FIELD_COLUMNS,
    ID,
    embeddings_of,
    fields_from_row,
)
from clipsearch.search import Hit, LegScores, Mode, SearchPlan, SearchResult

SCORE = "_score"
DISTANCE = "_distance"
_RESULT_COLUMNS = [*FIELD_COLUMNS, EMBEDDING]


@dataclass(frozen=True, slots=True)
class EngineOptions:
    dim: int
    hnsw_ef: int


def match_terms(text: str) -> MatchQuery:
    """The user's text as plain OR-ed terms (BM25), analysed like the indexed captions."""
    return MatchQuery(
        text, CAPTION_TEXT, boost=1.0, fuzziness=0, max_expansions=50,
        operator=FullTextOperator.OR, prefix_length=0, document_granularity=None,
    )


def _has_text(plan: SearchPlan) -> bool:
    return bool(plan.text and plan.text.strip())


async def lexical_leg(
    table: AsyncTable, text: str, where: str | None, limit: int, *, with_embedding: bool
) -> pa.Table:
    query = table.query().nearest_to_text(match_terms(text))
    if where:
        query = query.where(where)
    columns = _RESULT_COLUMNS if with_embedding else list(FIELD_COLUMNS)
    return await query.select([*columns, SCORE]).limit(limit).to_arrow()


async def vector_leg(
    table: AsyncTable, vector: np.ndarray, where: str | None, limit: int, ef: int
) -> pa.Table:
    query = (
        table.query()
        .nearest_to(vector)
        .column(EMBEDDING)
        .distance_type("cosine")
        .ef(ef)
    )
    if where:
        query = query.where(where)
    return await query.select([*_RESULT_COLUMNS, DISTANCE]).limit(limit).to_arrow()


async def lexical_scores_for(
    table: AsyncTable, text: str, ids: list[str], where: str | None
) -> dict[str, float]:
    """BM25 of the given ids for ``text`` (ids matching no term are absent)."""
    if not ids:
        return {}
    query = (
        table.query()
        .nearest_to_text(match_terms(text))
        .where(and_all([where, in_list(ID, ids)]) or "")
        .select([ID, SCORE])
        .limit(len(ids))
    )
    result = await query.to_arrow()
    return dict(zip(result.column(ID).to_pylist(), result.column(SCORE).to_pylist(), strict=True))


def _closeness(rows: pa.Table, vector: np.ndarray) -> np.ndarray:
    if rows.num_rows == 0:
        return np.zeros(0)
    cos = embeddings_of(rows).astype(np.float64) @ vector.astype(np.float64)
    return closeness_from_cosine(np.clip(cos, -1.0, 1.0))


def _row_index(table: pa.Table) -> dict[str, int]:
    return {doc_id: i for i, doc_id in enumerate(table.column(ID).to_pylist())}


@dataclass(frozen=True, slots=True)
class _Ranked:
    id: str
    score: float
    scores: LegScores


def _hits(ranked: list[_Ranked], rows: pa.Table, plan: SearchPlan) -> list[Hit]:
    """Hits of the requested page only: documents are converted for those rows alone."""
    page = ranked[plan.offset : plan.offset + plan.limit]
    where = _row_index(rows)
    take = pa.array([where[r.id] for r in page], pa.int64())
    docs = rows.select(list(FIELD_COLUMNS)).take(take).to_pylist()
    return [
        Hit(id=r.id, score=r.score, scores=r.scores, document=fields_from_row(doc))
        for r, doc in zip(page, docs, strict=True)
    ]


async def count_matching(table: AsyncTable, where: str | None) -> int:
    return await table.count_rows(where)


async def run_lexical(table: AsyncTable, plan: SearchPlan, where: str | None) -> SearchResult:
    assert plan.text is not None
    rows = await lexical_leg(table, plan.text, where, plan.window, with_embedding=False)
    ranked = sorted(
        (
            _Ranked(doc_id, float(s), LegScores(lexical=float(s)))
            for doc_id, s in zip(rows.column(ID).to_pylist(), rows.column(SCORE).to_pylist(),
                                 strict=True)
        ),
        key=lambda r: (-r.score, r.id),
    )
    capped = rows.num_rows >= plan.window
    return SearchResult(hits=_hits(ranked, rows, plan), total=len(ranked),
                        total_approximate=capped)


async def run_vector(
    table: AsyncTable, plan: SearchPlan, where: str | None, vector: np.ndarray, ef: int
) -> SearchResult:
    rows, total = await asyncio.gather(
        vector_leg(table, vector, where, plan.window, ef), count_matching(table, where)
    )
    ranked = sorted(
        (
            _Ranked(doc_id, c, LegScores(vector=c))
            for doc_id, c in zip(rows.column(ID).to_pylist(), _closeness(rows, vector).tolist(),
                                 strict=True)
        ),
        key=lambda r: (-r.score, r.id),
    )
    return SearchResult(hits=_hits(ranked, rows, plan), total=total)


async def _lexical_leg_or_none(
    table: AsyncTable, text: str | None, where: str | None, limit: int
) -> pa.Table | None:
    if text is None:
        return None
    return await lexical_leg(table, text, where, limit, with_embedding=True)


async def run_hybrid(
    table: AsyncTable, plan: SearchPlan, where: str | None, vector: np.ndarray, ef: int
) -> SearchResult:
    text = plan.text if _has_text(plan) else None
    vec_rows, lex_rows, total = await asyncio.gather(
        vector_leg(table, vector, where, plan.window, ef),
        _lexical_leg_or_none(table, text, where, plan.window),
        count_matching(table, where),
    )
    lexical: dict[str, float] = {}
    if lex_rows is None:
        lex_rows = vec_rows[:0]
    else:
        lexical = dict(zip(lex_rows.column(ID).to_pylist(), lex_rows.column(SCORE).to_pylist(),
                           strict=True))
        # The vector hits' BM25: when the lexical leg returned fewer rows than it asked for,
        # it returned every matching document, so any other hit matched no term (BM25 0).
        # Only a full (capped) lexical leg needs the extra lookup, for the ids it lacks.
        if text is not None and lex_rows.num_rows >= plan.window:
            missing = [i for i in vec_rows.column(ID).to_pylist() if i not in lexical]
            lexical |= await lexical_scores_for(table, text, missing, where)
    union = pa.concat_tables([vec_rows.select(_RESULT_COLUMNS), lex_rows.select(_RESULT_COLUMNS)])
    vector_scores = dict(
        zip(union.column(ID).to_pylist(), _closeness(union, vector).tolist(), strict=True)
    )
    candidates = [
        Candidate(id=doc_id, lexical=float(lexical.get(doc_id, 0.0)), vector=vector_scores[doc_id])
        for doc_id in sorted(vector_scores)
    ]
    ranked = [
        _Ranked(c.id, score,
                LegScores(lexical=c.lexical if text is not None else None, vector=c.vector))
        for c, score in fuse(candidates, plan.hybrid)
    ]
    return SearchResult(hits=_hits(ranked, union, plan), total=total)


async def run_search(table: AsyncTable, plan: SearchPlan, options: EngineOptions) -> SearchResult:
    if plan.vector is not None:
        check_dimension(plan.vector, options.dim)
    where = search_sql(plan.filters, plan.exclude_ids)
    if plan.mode == Mode.lexical:
        return await run_lexical(table, plan, where)
    assert plan.vector is not None
    vector = l2_normalize(np.asarray(plan.vector, dtype=np.float32))[0]
    if plan.mode == Mode.vector:
        return await run_vector(table, plan, where, vector, options.hnsw_ef)
    return await run_hybrid(table, plan, where, vector, options.hnsw_ef)
