"""Retrieval over a live index: every query of a set, per search mode, as a ranked run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import BaseModel

from clipsearch.evaluation.metrics import DEFAULT_RECALL_KS, evaluate_run
from clipsearch.evaluation.queries import QuerySet
from clipsearch.index.base import SearchIndex
from clipsearch.search import MAX_LIMIT, Filters, Fusion, HybridParameters, Mode, SearchPlan


class ModeSetting(BaseModel):
    mode: Mode
    hybrid: HybridParameters = HybridParameters()

    @property
    def label(self) -> str:
        if self.mode != Mode.hybrid:
            return self.mode.value
        if self.hybrid.fusion == Fusion.rrf:
            return f"hybrid (rrf k={self.hybrid.rrf_k})"
        return f"hybrid (linear α={self.hybrid.alpha:g})"


class ModeResult(BaseModel):
    setting: ModeSetting
    label: str
    metrics: dict[str, dict[str, float]]  # query set -> metric -> mean


def standard_settings(hybrid: HybridParameters) -> list[ModeSetting]:
    return [ModeSetting(mode=Mode.lexical), ModeSetting(mode=Mode.vector),
            ModeSetting(mode=Mode.hybrid, hybrid=hybrid)]


async def run_query_set(index: SearchIndex, queries: QuerySet, vectors: Mapping[str, np.ndarray],
                        setting: ModeSetting, *, depth: int, filters: Filters,
                        candidates: int) -> dict[str, list[str]]:
    """Ranked document ids per query (a lexical query without matching terms ranks nothing)."""
    run: dict[str, list[str]] = {}
    for qid, text in queries.texts.items():
        plan = SearchPlan(
            mode=setting.mode, text=text[:2000] or None,
            vector=None if setting.mode == Mode.lexical else [float(x) for x in vectors[qid]],
            limit=min(depth, MAX_LIMIT), filters=filters, hybrid=setting.hybrid,
            candidates=max(candidates, depth))
        result = await index.search(plan)
        run[qid] = [h.id for h in result.hits]
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
