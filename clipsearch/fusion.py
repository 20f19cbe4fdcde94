"""The hybrid fusion formula, defined once.

The embedded engine applies it to the union of its lexical and vector candidates; the Vespa
``hybrid`` rank profiles compute the same thing in ``global-phase`` over their rerank window,
and the loopback Vespa used in tests calls this module. Definitions:

* vector leg score: Vespa's ``closeness(field, embedding)`` for ``prenormalized-angular``,
  ``1 / (1 + (1 - cos))``; lexical leg score: ``bm25(caption)`` (0 when no term matched).
* ranks: competition ranking inside the window, ``1 + #(window hits with a strictly higher
  score)``, so ties share a rank and the result does not depend on input order.
* ``rrf``: ``1/(k + rank_lexical) + 1/(k + rank_vector)``.
* ``linear``: ``alpha * norm(vector) + (1 - alpha) * norm(lexical)`` with
  ``norm(x) = (x - min) / (max - min)`` over the window (0 when max == min).
* final order: fused score descending, then id ascending.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from clipsearch.search import Fusion, HybridParameters


def closeness_from_cosine(cos: np.ndarray) -> np.ndarray:
    """Vespa's closeness for ``prenormalized-angular``: ``1 / (1 + distance)``, distance = 1-cos.

    Cosines are clipped to [-1, 1] first: float rounding can put them just outside."""
    return 1.0 / (2.0 - np.clip(np.asarray(cos, dtype=np.float64), -1.0, 1.0))


@dataclass(frozen=True, slots=True)
class Candidate:
    id: str
    lexical: float
    vector: float


def competition_ranks(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """1 + number of strictly greater scores, for every element."""
    arr = np.asarray(scores, dtype=np.float64)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.sort(arr)[::-1]
    # number strictly greater than x = len - (index of first element <= x in descending order)
    greater = np.searchsorted(-order, -arr, side="left")
    return (greater + 1).astype(np.int64)


def min_max(scores: np.ndarray) -> np.ndarray:
    lo, hi = float(scores.min()), float(scores.max())
    if hi - lo <= 0.0:
        return np.zeros_like(scores)
    return (scores - lo) / (hi - lo)


def fused_scores(candidates: Sequence[Candidate], params: HybridParameters) -> np.ndarray:
    """Fused score of every candidate, in input order."""
    if not candidates:
        return np.zeros(0)
    lex = np.array([c.lexical for c in candidates], dtype=np.float64)
    vec = np.array([c.vector for c in candidates], dtype=np.float64)
    if params.fusion == Fusion.rrf:
        k = float(params.rrf_k)
        return 1.0 / (k + competition_ranks(lex)) + 1.0 / (k + competition_ranks(vec))
    return params.alpha * min_max(vec) + (1.0 - params.alpha) * min_max(lex)


def fuse(
    candidates: Sequence[Candidate], params: HybridParameters
) -> list[tuple[Candidate, float]]:
    """Candidates with their fused score, best first (ties broken by id)."""
    scores = fused_scores(candidates, params)
    paired = list(zip(candidates, scores.tolist(), strict=True))
    paired.sort(key=lambda p: (-p[1], p[0].id))
    return paired
