"""Search legs over a LanceDB table and their fusion (the embedded engine's ``search``).

* lexical leg: native FTS (BM25, k1 1.2, b 0.75) with a ``MatchQuery``: the user's text is
  tokenised by the index's analyzer as plain terms and never parsed as query syntax.
* vector leg: nearest neighbours by cosine (HNSW when the table has an ANN index, an exact flat
  scan otherwise) with ``refine_factor(1)``: every candidate's distance is recomputed from its
  stored float32 embedding, so the score never carries the index's quantisation error.
* hybrid: both legs at once (``plan.window`` candidates each), the union of both, the missing
  leg score of each candidate filled in (lexical: an FTS query restricted to the vector hits,
  0 when no term matched; vector: exact closeness from the stored embedding), then the
  scores of ``clipsearch.fusion.fused_scores`` in its order (score, then id: see below).
Filters and ``exclude_ids`` are prefilters on every call.

Cost model (measured at 200k documents, ``bench/load.py``): reading a column costs about the
same per call whether it is one row or a hundred, and each extra column costs as much again.
So the legs return row ids and scores only; embeddings are read for the candidates that lack
a vector score, and the document fields for the requested page alone, from the one-column
summary (``embedded_schema.SUMMARY``). The final order is
"fused score descending, then id ascending": ids are only needed to order ties, so the page is
widened to whole tie groups before its fields are read, and sorted by id there.

Row ids address the table version a call saw. A write between two calls of one search
(compaction, an update or a delete) can retire a row id: a read that returns fewer rows than
it asked for detects that, and the search runs again on the new version (``ATTEMPTS``); the
last attempt keeps what it got.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from lancedb.query import FullTextOperator, MatchQuery
from lancedb.table import AsyncTable

from clipsearch.documents import DocumentFields
from clipsearch.embeddings import check_dimension, l2_normalize
from clipsearch.fusion import Candidate, closeness_from_cosine, fused_scores
from clipsearch.index.embedded_filters import and_all, rowid_in, search_sql
from clipsearch.index.embedded_schema import (
    CAPTION_TEXT,
    EMBEDDING,
    FIELD_COLUMNS,
    ID,
    SUMMARY,
    embeddings_of,
    fields_from_row,
    fields_from_summary,
)
from clipsearch.index.fusion_window import check_fusion_window
from clipsearch.search import Hit, LegScores, Mode, SearchPlan, SearchResult

SCORE = "_score"
DISTANCE = "_distance"
ROWID = "_rowid"
ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class EngineOptions:
    dim: int
    hnsw_ef: int
    summary: bool = True  # the table has the summary column (``embedded_schema.SUMMARY``)


class TableChanged(Exception):
    """A row id read by an earlier call of this search is gone: a write committed meanwhile."""


def match_terms(text: str) -> MatchQuery:
    """The user's text as plain OR-ed terms (BM25), analysed like the indexed captions."""
    return MatchQuery(
        text, CAPTION_TEXT, boost=1.0, fuzziness=0, max_expansions=50,
        operator=FullTextOperator.OR, prefix_length=0, document_granularity=None,
    )


def _has_text(plan: SearchPlan) -> bool:
    return bool(plan.text and plan.text.strip())


def _rowids(rows: pa.Table) -> np.ndarray:
    return rows.column(ROWID).to_numpy().astype(np.uint64, copy=False)


@dataclass(frozen=True, slots=True)
class Scored:
    """Row ids with one score each, in the order a leg returned them."""

    rowids: np.ndarray  # uint64
    scores: np.ndarray  # float64

    @classmethod
    def of(cls, rows: pa.Table, column: str) -> Scored:
        return cls(_rowids(rows), rows.column(column).to_numpy().astype(np.float64))

    @classmethod
    def empty(cls) -> Scored:
        return cls(np.zeros(0, np.uint64), np.zeros(0, np.float64))

    def as_dict(self) -> dict[int, float]:
        return dict(zip(self.rowids.tolist(), self.scores.tolist(), strict=True))

    def __len__(self) -> int:
        return len(self.rowids)


# --- legs ------------------------------------------------------------------------------


async def lexical_leg(table: AsyncTable, text: str, where: str | None, limit: int) -> Scored:
    """BM25 of the best ``limit`` matches (row ids and scores)."""
    query = table.query().nearest_to_text(match_terms(text))
    if where:
        query = query.where(where)
    rows = await query.select([SCORE]).with_row_id().limit(limit).to_arrow()
    return Scored.of(rows, SCORE)


async def vector_leg(
    table: AsyncTable, vector: np.ndarray, where: str | None, limit: int, ef: int
) -> Scored:
    """Exact closeness of the ``limit`` nearest neighbours (row ids and closeness)."""
    query = (
        table.query()
        .nearest_to(vector)
        .column(EMBEDDING)
        .distance_type("cosine")
        .ef(ef)
        .refine_factor(1)
    )
    if where:
        query = query.where(where)
    rows = await query.select([DISTANCE]).with_row_id().limit(limit).to_arrow()
    cosine = 1.0 - rows.column(DISTANCE).to_numpy().astype(np.float64)
    return Scored(_rowids(rows), closeness_from_cosine(cosine))


async def lexical_scores_for(
    table: AsyncTable, text: str, rowids: list[int], where: str | None
) -> dict[int, float]:
    """BM25 of the given rows for ``text`` (rows matching no term are absent)."""
    if not rowids:
        return {}
    rows = await (
        table.query()
        .nearest_to_text(match_terms(text))
        .where(and_all([where, rowid_in(rowids)]) or "")
        .select([SCORE])
        .with_row_id()
        .limit(len(rowids))
        .to_arrow()
    )
    return Scored.of(rows, SCORE).as_dict()


async def take_rows(
    table: AsyncTable, rowids: list[int], columns: list[str], *, complete: bool
) -> pa.Table:
    """``columns`` of the given rows, in the order asked. Raises ``TableChanged`` when a row
    is gone unless ``complete`` is False (then the missing rows are left out)."""
    if not rowids:
        return pa.table({ROWID: pa.array([], pa.uint64())})
    ordered = sorted(set(rowids))  # one ascending pass over the file is ~2x cheaper
    rows = await table.take_row_ids(ordered).select(columns).with_row_id().to_arrow()
    position = {r: i for i, r in enumerate(rows.column(ROWID).to_pylist())}
    if complete and len(position) < len(ordered):
        raise TableChanged(f"{len(ordered) - len(position)} of {len(ordered)} rows are gone")
    picks = [position[r] for r in rowids if r in position]
    return rows.take(pa.array(picks, pa.int64()))


async def vector_scores_for(
    table: AsyncTable, rowids: list[int], vector: np.ndarray, *, complete: bool
) -> dict[int, float]:
    """Exact closeness of the given rows to ``vector``, from their stored embeddings."""
    if not rowids:
        return {}
    rows = await take_rows(table, rowids, [EMBEDDING], complete=complete)
    if rows.num_rows == 0:
        return {}
    cosine = embeddings_of(rows).astype(np.float64) @ vector.astype(np.float64)
    closeness = closeness_from_cosine(cosine)
    return dict(zip(rows.column(ROWID).to_pylist(), closeness.tolist(), strict=True))


async def count_matching(table: AsyncTable, where: str | None) -> int:
    return await table.count_rows(where)


# --- ranking and the page --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ranked:
    """Every candidate of one search: row id, fused score and the legs' scores."""

    rowids: list[int]
    scores: list[float]
    legs: list[LegScores]


def tie_widened(sorted_scores: list[float], start: int, stop: int) -> tuple[int, int]:
    """The positions to read so that the page ``[start, stop)`` of a list sorted by score
    descending can be ordered by id within ties: the page plus every candidate tied with its
    first or last score."""
    lo, hi = start, stop
    while lo > 0 and sorted_scores[lo - 1] == sorted_scores[start]:
        lo -= 1
    while hi < len(sorted_scores) and sorted_scores[hi] == sorted_scores[stop - 1]:
        hi += 1
    return lo, hi


def _page_fields(rows: pa.Table, summary: bool) -> dict[int, DocumentFields]:
    rowids = rows.column(ROWID).to_pylist()
    if summary:
        docs = [fields_from_summary(s) for s in rows.column(SUMMARY).to_pylist()]
    else:
        docs = [fields_from_row(r) for r in rows.select(list(FIELD_COLUMNS)).to_pylist()]
    return dict(zip(rowids, docs, strict=True))


async def page_hits(
    table: AsyncTable, ranked: Ranked, plan: SearchPlan, *, complete: bool, summary: bool
) -> list[Hit]:
    """The requested page, ordered by score descending then id ascending."""
    order = sorted(range(len(ranked.rowids)), key=lambda i: -ranked.scores[i])
    start = min(plan.offset, len(order))
    stop = min(plan.offset + plan.limit, len(order))
    if start >= stop:
        return []
    sorted_scores = [ranked.scores[i] for i in order]
    lo, hi = tie_widened(sorted_scores, start, stop)
    columns = [SUMMARY] if summary else list(FIELD_COLUMNS)
    ids_before, by_rowid = await asyncio.gather(  # ids ahead of the page: for dedupe_by_id
        _ids_of(table, [ranked.rowids[i] for i in order[:lo]], complete=complete),
        _fields_of(table, [ranked.rowids[i] for i in order[lo:hi]], columns, summary,
                   complete=complete),
    )
    while True:
        unique = dedupe_by_id(ranked, order[:hi], ids_before, by_rowid)
        if len(unique) >= stop or hi >= len(order):
            break
        # The table holds some id twice (two writers once raced): read further down.
        _, hi_next = tie_widened(sorted_scores, hi, min(len(order), hi + stop - len(unique)))
        by_rowid |= await _fields_of(table, [ranked.rowids[i] for i in order[hi:hi_next]],
                                     columns, summary, complete=complete)
        hi = hi_next
    return [
        Hit(id=by_rowid[ranked.rowids[i]].id, score=ranked.scores[i], scores=ranked.legs[i],
            document=by_rowid[ranked.rowids[i]])
        for i in unique[start:stop]
    ]


async def _ids_of(table: AsyncTable, rowids: list[int], *, complete: bool) -> dict[int, str]:
    if not rowids:
        return {}
    rows = await take_rows(table, rowids, [ID], complete=complete)
    return dict(zip(rows.column(ROWID).to_pylist(), rows.column(ID).to_pylist(), strict=True))


async def _fields_of(table: AsyncTable, rowids: list[int], columns: list[str], summary: bool,
                     *, complete: bool) -> dict[int, DocumentFields]:
    if not rowids:
        return {}
    return _page_fields(await take_rows(table, rowids, columns, complete=complete), summary)


def dedupe_by_id(ranked: Ranked, prefix: list[int], ids_before: dict[int, str],
                 by_rowid: dict[int, DocumentFields]) -> list[int]:
    """Positions of ``prefix`` (a score-sorted prefix of the candidates, ending on a whole
    tie group) in the final order (score descending, then id), each id once: its best row.
    Rows whose id is unknown (gone since the legs ran) are left out."""
    known: list[tuple[int, str]] = []
    for i in prefix:
        rowid = ranked.rowids[i]
        doc_id = ids_before.get(rowid) or (by_rowid[rowid].id if rowid in by_rowid else None)
        if doc_id is not None:
            known.append((i, doc_id))
    known.sort(key=lambda pair: (-ranked.scores[pair[0]], pair[1]))
    seen: set[str] = set()
    unique: list[int] = []
    for i, doc_id in known:
        if doc_id not in seen:
            seen.add(doc_id)
            unique.append(i)
    return unique


# --- modes -----------------------------------------------------------------------------


async def run_lexical(
    table: AsyncTable, plan: SearchPlan, where: str | None, options: EngineOptions,
    *, complete: bool,
) -> SearchResult:
    assert plan.text is not None
    leg = await lexical_leg(table, plan.text, where, plan.window)
    scores = leg.scores.tolist()
    ranked = Ranked(leg.rowids.tolist(), scores, [LegScores(lexical=s) for s in scores])
    return SearchResult(
        hits=await page_hits(table, ranked, plan, complete=complete, summary=options.summary),
        total=len(leg),
        total_approximate=len(leg) >= plan.window,
    )


async def run_vector(
    table: AsyncTable, plan: SearchPlan, where: str | None, vector: np.ndarray,
    options: EngineOptions, *, complete: bool,
) -> SearchResult:
    leg, total = await asyncio.gather(
        vector_leg(table, vector, where, plan.window, options.hnsw_ef),
        count_matching(table, where),
    )
    scores = leg.scores.tolist()
    ranked = Ranked(leg.rowids.tolist(), scores, [LegScores(vector=s) for s in scores])
    hits = await page_hits(table, ranked, plan, complete=complete, summary=options.summary)
    return SearchResult(hits=hits, total=total)


async def _lexical_leg_or_none(
    table: AsyncTable, text: str | None, where: str | None, limit: int
) -> Scored | None:
    return None if text is None else await lexical_leg(table, text, where, limit)


async def _no_scores() -> dict[int, float]:
    return {}


async def run_hybrid(
    table: AsyncTable, plan: SearchPlan, where: str | None, vector: np.ndarray,
    options: EngineOptions, *, complete: bool,
) -> SearchResult:
    check_fusion_window(plan)  # the same depth limit as the Vespa client (422)
    text = plan.text if _has_text(plan) else None
    vec, lex_or_none, total = await asyncio.gather(
        vector_leg(table, vector, where, plan.window, options.hnsw_ef),
        _lexical_leg_or_none(table, text, where, plan.window),
        count_matching(table, where),
    )
    lex = lex_or_none or Scored.empty()
    vector_scores, lexical = vec.as_dict(), lex.as_dict()
    # The vector hits' BM25: when the lexical leg returned fewer rows than it asked for, it
    # returned every matching document, so any other hit matched no term (BM25 0). Only a
    # full (capped) lexical leg needs the lookup, for the rows it lacks. Meanwhile the exact
    # closeness of the lexical hits the vector leg lacks is computed from their embeddings.
    lexical_missing = (
        [r for r in vector_scores if r not in lexical]
        if text is not None and len(lex) >= plan.window else []
    )
    vector_missing = [r for r in lexical if r not in vector_scores]
    more_lexical, more_vector = await asyncio.gather(
        lexical_scores_for(table, text, lexical_missing, where) if text else _no_scores(),
        vector_scores_for(table, vector_missing, vector, complete=complete),
    )
    lexical |= more_lexical
    vector_scores |= more_vector
    rowids = sorted(vector_scores)  # a lexical hit whose row vanished has no vector score
    candidates = [Candidate(id=str(r), lexical=lexical.get(r, 0.0), vector=vector_scores[r])
                  for r in rowids]
    fused = fused_scores(candidates, plan.hybrid, depth=plan.window).tolist()
    legs = [LegScores(lexical=c.lexical if text is not None else None, vector=c.vector)
            for c in candidates]
    ranked = Ranked(rowids, fused, legs)
    hits = await page_hits(table, ranked, plan, complete=complete, summary=options.summary)
    return SearchResult(hits=hits, total=total)


async def _run_once(
    table: AsyncTable, plan: SearchPlan, where: str | None, options: EngineOptions,
    *, complete: bool,
) -> SearchResult:
    if plan.mode == Mode.lexical:
        return await run_lexical(table, plan, where, options, complete=complete)
    assert plan.vector is not None
    vector = l2_normalize(np.asarray(plan.vector, dtype=np.float32))[0]
    if plan.mode == Mode.vector:
        return await run_vector(table, plan, where, vector, options, complete=complete)
    return await run_hybrid(table, plan, where, vector, options, complete=complete)


async def run_search(table: AsyncTable, plan: SearchPlan, options: EngineOptions) -> SearchResult:
    if plan.vector is not None:
        check_dimension(plan.vector, options.dim)
    where = search_sql(plan.filters, plan.exclude_ids)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await _run_once(table, plan, where, options, complete=attempt < ATTEMPTS)
        except TableChanged:
            continue
    raise AssertionError("unreachable: the last attempt accepts missing rows")
