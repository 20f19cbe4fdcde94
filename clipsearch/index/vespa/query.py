"""Search requests for Vespa's ``POST /search/``, built from fixed YQL templates.

User text never enters YQL: it travels in the ``query`` parameter and ``userQuery()`` parses
it (weakAnd over the caption field; ``model.type=tokenize``: no query syntax). Filter values
and ids are validated by the pydantic models (``Label``, ``DocId`` patterns) and are still
escaped here as YQL string literals.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from clipsearch.index.vespa import schema_names as n
from clipsearch.index.vespa.binarized import Q_BITS, BinarizedQuery, bits_field
from clipsearch.search import Filters, Mode, SearchPlan

SUMMARY_FIELDS = (n.F_ID, n.F_CAPTIONS, n.F_DATASET, n.F_CATEGORY, n.F_SPLIT, n.F_IMAGE_URI,
                  n.F_MODEL_ID)
# weakAnd over the terms, with no query syntax: "+", "-", quotes, "field:" are plain text
QUERY_MODEL_TYPE = "tokenize"
MAX_IN_VALUES = 1000
DEFAULT_LANGUAGE = n.DEFAULT_LANGUAGE  # CLIPSEARCH_VESPA_LANGUAGE
_WORD = re.compile(r"\w", re.UNICODE)


def yql_string(value: str) -> str:
    """A YQL double-quoted string literal (JSON escaping is a subset YQL accepts)."""
    return json.dumps(value, ensure_ascii=False)


def in_clause(field: str, values: Sequence[str]) -> str:
    if not values or len(values) > MAX_IN_VALUES:
        raise ValueError(f"need 1..{MAX_IN_VALUES} values for {field}")
    return f"{field} in ({', '.join(yql_string(v) for v in values)})"


def filter_clauses(filters: Filters) -> list[str]:
    return [in_clause(name, values) for name, values in filters.items()]


def nearest_neighbor(target_hits: int, field: str = n.F_EMBEDDING,
                     query_tensor: str = "q") -> str:
    return f"({{targetHits:{int(target_hits)}}}nearestNeighbor({field}, {query_tensor}))"


def has_terms(text: str | None) -> bool:
    """Whether ``text`` holds anything to search for (Vespa rejects a query with no terms)."""
    return bool(text and _WORD.search(text))


def retrieval(lexical: bool, vector: bool, target_hits: int,
              field: str = n.F_EMBEDDING, query_tensor: str = "q") -> str:
    if lexical and vector:
        return f"(userQuery() or {nearest_neighbor(target_hits, field, query_tensor)})"
    if vector:
        return nearest_neighbor(target_hits, field, query_tensor)
    return "userQuery()"


def select(where: Sequence[str], exclude_ids: Sequence[str] = ()) -> str:
    clauses = list(where) or ["true"]
    if exclude_ids:
        clauses.append(f"!({in_clause(n.F_ID, exclude_ids)})")
    return (f"select {', '.join(SUMMARY_FIELDS)} from {n.SCHEMA} "
            f"where {' and '.join(clauses)}")


def search_body(plan: SearchPlan, *, timeout_s: float, hits: int, offset: int,
                rerank_count: int, language: str = DEFAULT_LANGUAGE,
                field: str = n.F_EMBEDDING, profile_suffix: str = "",
                extra_where: Sequence[str] = (),
                binarized: BinarizedQuery | None = None) -> dict[str, Any]:
    """The JSON body for one search. ``hits``/``offset`` may differ from the plan's when the
    client fuses the window itself. The caller makes sure the lexical leg has terms when the
    mode is ``lexical``. ``field``/``profile_suffix``/``extra_where``: an index generation's
    tensor field, its profiles and its membership clause (``generation_names``).
    ``binarized``: the field is binarised (``binarized``): the nearestNeighbor runs on its
    ``_bits`` field with the packed query ``q_bits`` and enough candidates for the re-rank."""
    lexical = plan.mode != Mode.vector and has_terms(plan.text)
    vector = plan.mode != Mode.lexical
    profile = n.profile_for(plan.mode, plan.hybrid.fusion)
    nn_field, nn_query, target = field, "q", plan.window
    if binarized is not None:
        nn_field, nn_query = bits_field(field), Q_BITS
        target = binarized.target_hits(plan.window)
    where = [retrieval(lexical, vector, target, nn_field, nn_query),
             *filter_clauses(plan.filters),
             *extra_where]
    body: dict[str, Any] = {
        "yql": select(where, plan.exclude_ids),
        "ranking.profile": profile + profile_suffix,
        "hits": hits,
        "offset": offset,
        "timeout": f"{timeout_s:.3f}s",
    }
    if lexical:
        body["query"] = plan.text
        body["model.type"] = QUERY_MODEL_TYPE
        body["model.defaultIndex"] = n.F_CAPTION
        # the captions' language (set_language in the schema): never detected per query
        body["model.locale"] = language
    if vector:
        body[f"input.{n.INPUT_Q}"] = list(plan.vector or [])
        if binarized is not None:  # packed bits for the HNSW, floats for the re-rank
            body.update(binarized.inputs(plan.vector or []))
            body["ranking.rerankCount"] = binarized.rerank_count(plan.window,
                                                                 plan.mode == Mode.hybrid)
    if plan.mode == Mode.hybrid:
        body["ranking.globalPhase.rerankCount"] = rerank_count
    if n.INPUT_ALPHA in n.INPUTS_SENT[profile]:
        body[f"input.{n.INPUT_ALPHA}"] = plan.hybrid.alpha
    if n.INPUT_SATURATION in n.INPUTS_SENT[profile]:
        body[f"input.{n.INPUT_SATURATION}"] = plan.hybrid.saturation
    return body


def count_body(filters: Filters | None, timeout_s: float,
               extra_where: Sequence[str] = ()) -> dict[str, Any]:
    where = [*(filter_clauses(filters) if filters else []), *extra_where]
    return {"yql": select(where), "hits": 0, "timeout": f"{timeout_s:.3f}s"}


def ids_body(ids: Sequence[str], timeout_s: float,
             extra_where: Sequence[str] = ()) -> dict[str, Any]:
    where = " and ".join([in_clause(n.F_ID, ids), *extra_where])
    return {"yql": f"select {n.F_ID} from {n.SCHEMA} where {where}",
            "hits": len(ids), "timeout": f"{timeout_s:.3f}s"}
