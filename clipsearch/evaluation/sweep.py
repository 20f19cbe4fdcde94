"""Sweep the hybrid fusion settings (linear α, RRF k) and pick the best by one metric."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel

from clipsearch.evaluation.retrieval import ModeResult, ModeSetting
from clipsearch.search import Fusion, HybridParameters, Mode

DEFAULT_ALPHAS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
DEFAULT_RRF_KS: tuple[int, ...] = (1, 5, 10, 20, 40, 60, 100)
DEFAULT_SATURATIONS: tuple[float, ...] = (1.0, 3.0, 10.0)


class SweepPoint(BaseModel):
    label: str
    hybrid: HybridParameters
    metrics: dict[str, dict[str, float]]
    objective: float


class SweepResult(BaseModel):
    objective: str
    query_sets: list[str]
    points: list[SweepPoint]
    best: SweepPoint


def sweep_settings(alphas: Sequence[float] = DEFAULT_ALPHAS,
                   rrf_ks: Sequence[int] = DEFAULT_RRF_KS,
                   saturations: Sequence[float] = DEFAULT_SATURATIONS) -> list[ModeSetting]:
    """Every fusion over its parameter grid: score (α x saturation), linear (α), window and
    textbook RRF (k)."""
    def hybrid(**kw: object) -> ModeSetting:
        return ModeSetting(mode=Mode.hybrid, hybrid=HybridParameters.model_validate(kw))

    score = [hybrid(fusion=Fusion.score, alpha=a, saturation=c)
             for c in saturations for a in alphas]
    linear = [hybrid(fusion=Fusion.linear, alpha=a) for a in alphas]
    rrf = [hybrid(fusion=f, rrf_k=k) for f in (Fusion.rrf, Fusion.rrf_textbook) for k in rrf_ks]
    return score + linear + rrf


def objective_value(metrics: dict[str, dict[str, float]], objective: str,
                    query_sets: Sequence[str]) -> float:
    """The objective metric averaged over the query sets (each set weighs the same)."""
    values = []
    for name in query_sets:
        if objective not in metrics.get(name, {}):
            raise ValueError(f"metric {objective!r} was not measured for query set {name!r}")
        values.append(metrics[name][objective])
    return float(np.mean(values))


def pick_best(results: Sequence[ModeResult], objective: str,
              query_sets: Sequence[str]) -> SweepResult:
    """Score every hybrid setting; the best is the highest objective (first listed on ties)."""
    if not results:
        raise ValueError("nothing to sweep")
    points = [SweepPoint(label=r.label, hybrid=r.setting.hybrid, metrics=r.metrics,
                         objective=objective_value(r.metrics, objective, query_sets))
              for r in results]
    best = max(points, key=lambda p: p.objective)  # max keeps the first of equals
    return SweepResult(objective=objective, query_sets=list(query_sets), points=points,
                       best=best)
