"""Retrieval over a live index: every query of a set, per search mode, as a ranked run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import BaseModel

from clipsearch.evaluation.metrics import DEFAULT_RECALL_KS, evaluate_run
from clipsearch.evaluation.queries import QuerySet
from clipsearch.evaluation.ties import DEFAULT_SEED, boundary_tied, neutral_order
from clipsearch.index.base import SearchIndex
from clipsearch.search import (
    MAX_LIMIT,
    MAX_OFFSET,
    Filters,
    Fusion,
    HybridParameters,
    Mode,
    SearchPlan,
)


class ModeSetting(BaseModel):
    mode: Mode
    hybrid: HybridParameters = HybridParameters()

    @property
    def label(self) -> str:
        if self.mode != Mode.hybrid:
            return self.mode.value
        h = self.hybrid
        if h.fusion == Fusion.rrf:
            return f"hybrid (rrf k={h.rrf_k})"
        if h.fusion == Fusion.rrf_textbook:
            return f"hybrid (textbook rrf k={h.rrf_k})"
        if h.fusion == Fusion.score:
            return f"hybrid (score α={h.alpha:g} s={h.saturation:g})"
        return f"hybrid (linear α={h.alpha:g})"


class ModeResult(BaseModel):
    setting: ModeSetting
    label: str
    metrics: dict[str, dict[str, float]]  # query set -> metric -> mean


def standard_settings(hybrid: HybridParameters) -> list[ModeSetting]:
    return [ModeSetting(mode=Mode.lexical), ModeSetting(mode=Mode.vector),
            ModeSetting(mode=Mode.hybrid, hybrid=hybrid)]


def _window_free(setting: ModeSetting) -> bool:
    """Whether a hit's score is the same whatever the page (so deeper pages may be read)."""
    return setting.mode != Mode.hybrid or setting.hybrid.fusion == Fusion.score


async def ranked_hits(index: SearchIndex, plan: SearchPlan, depth: int,
                      deeper: bool) -> list[tuple[str, float]]:
    """(id, score) of the top ``depth`` hits and of every hit tied with the one at ``depth``
    (read page by page when ``deeper``, up to MAX_OFFSET), so ties can be reordered."""
    hits: list[tuple[str, float]] = []
    page = plan.model_copy(update={"limit": MAX_LIMIT, "offset": 0})
    while True:
        result = await index.search(page)
        hits += [(h.id, h.score) for h in result.hits]
        more = len(result.hits) == page.limit and page.offset + MAX_LIMIT <= MAX_OFFSET
        if not (deeper and more and boundary_tied([s for _, s in hits], depth)):
            return hits
        page = page.model_copy(update={"offset": page.offset + MAX_LIMIT})


async def run_query_set(index: SearchIndex, queries: QuerySet, vectors: Mapping[str, np.ndarray],
                        setting: ModeSetting, *, depth: int, filters: Filters,
                        candidates: int, seed: int = DEFAULT_SEED) -> dict[str, list[str]]:
    """Ranked document ids per query (a lexical query without matching terms ranks nothing),
    equal scores in a seeded, label-neutral order (``clipsearch.evaluation.ties``)."""
    run: dict[str, list[str]] = {}
    for qid, text in queries.texts.items():
        plan = SearchPlan(
            mode=setting.mode, text=text[:2000] or None,
            vector=None if setting.mode == Mode.lexical else [float(x) for x in vectors[qid]],
            limit=min(depth, MAX_LIMIT), filters=filters, hybrid=setting.hybrid,
            candidates=max(candidates, depth))
        hits = await ranked_hits(index, plan, depth, deeper=_window_free(setting))
        run[qid] = neutral_order(hits, qid, seed)[:depth]
    return run


async def evaluate_settings(index: SearchIndex, query_sets: Sequence[QuerySet],
                            vectors: Mapping[str, np.ndarray], settings: Sequence[ModeSetting],
                            *, filters: Filters, candidates: int,
                            recall_ks: Sequence[int] = DEFAULT_RECALL_KS,
                            cutoff: int = 10) -> list[ModeResult]:
    depth = max(*recall_ks, cutoff)
    results = []
    for setting in settings:
        metrics: dict[str, dict[str, float]] = {}
        for qs in query_sets:
            if len(qs) == 0:
                continue
            run = await run_query_set(index, qs, vectors, setting, depth=depth, filters=filters,
                                      candidates=candidates)
            metrics[qs.name] = evaluate_run(qs.qrels, run, recall_ks=recall_ks, cutoff=cutoff)
        results.append(ModeResult(setting=setting, label=setting.label, metrics=metrics))
    return results


async def calibration_samples(index: SearchIndex, query_sets: Sequence[QuerySet],
                              vectors: Mapping[str, np.ndarray], hybrid: HybridParameters, *,
                              filters: Filters, candidates: int, depth: int = 50
                              ) -> tuple[list[list[float]], list[int]]:
    """(features, relevant?) of the top ``depth`` hybrid hits of every labelled query
    (``clipsearch.quality.calibration.features``)."""
    from clipsearch.quality.calibration import features

    rows: list[list[float]] = []
    labels: list[int] = []
    for qs in query_sets:
        for qid, text in qs.texts.items():
            plan = SearchPlan(mode=Mode.hybrid, text=text[:2000] or None,
                              vector=[float(x) for x in vectors[qid]],
                              limit=min(depth, MAX_LIMIT), filters=filters, hybrid=hybrid,
                              candidates=max(candidates, depth))
            result = await index.search(plan)
            for rank, h in enumerate(result.hits, start=1):
                rows.append(features(h.scores.lexical, h.scores.vector, rank))
                labels.append(int(qs.qrels[qid].get(h.id, 0) > 0))
    return rows, labels
