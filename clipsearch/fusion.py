"""The hybrid fusion formulas, defined once.

The embedded engine applies them to the union of its lexical and vector candidates; the Vespa
``hybrid`` rank profiles compute the window variants in ``global-phase`` over their rerank
window (``rrf_textbook`` is fused by the Vespa client from the returned window, with this
module), and the loopback Vespa used in tests calls this module. Definitions:

* vector leg score: Vespa's ``closeness(field, embedding)`` for ``prenormalized-angular``,
  ``1 / (1 + (1 - cos))``; lexical leg score: ``bm25(caption)`` (0 when no term matched).
* ranks: competition ranking inside the window, ``1 + #(window hits with a strictly higher
  score)``, so ties share a rank and the result does not depend on input order.
* ``rrf`` (window RRF, Vespa's ``reciprocal_rank`` over the rerank window):
  ``1/(k + rank_lexical) + 1/(k + rank_vector)`` for every hit of the window, also for a leg
  that did not retrieve the hit (it then has a low rank, e.g. the rank shared by every BM25
  of 0).
* ``rrf_textbook`` (Cormack et al. 2009): the same sum over the legs that RETRIEVED the hit
  only. A leg retrieved a hit when the hit is among the leg's ``depth`` best in the window
  (``depth`` = the per-leg candidates, ``SearchPlan.window``) and, for the lexical leg, when
  at least one query term matched (BM25 > 0). With exact legs this is exactly "the hit was in
  that leg's result list": a lexical-only hit's closeness ranks below the vector leg's own
  hits, a vector-only hit's BM25 below the lexical leg's.
* ``linear``: ``alpha * norm(vector) + (1 - alpha) * norm(lexical)`` with
  ``norm(x) = (x - min) / (max - min)`` over the window, and 0.5 when max == min (a constant
  leg), as Vespa's ``normalize_linear`` (``LinearNormalizer``) does.
* ``score``: ``alpha * vector + (1 - alpha) * bm25 / (bm25 + saturation)``: the legs' own
  scores (closeness; BM25 saturated into [0, 1)), not normalised over the window, so a leg
  whose scores barely differ (an untrained or off-domain model: cosines within ~0.01 of
  each other) barely moves the order, and the fused score of a hit does not depend on the
  other hits (pages and windows cannot change it). Vespa computes it in ``first-phase``.
* final order: fused score descending, then id ascending.

``DEFAULT_FUSION`` was chosen by the numbers of ``bench/quality.py`` (README, "Search
quality"): on the demo data it is the only formula that beats both legs with the trained
model and stays within 0.02 of the lexical leg with the untrained one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from clipsearch.search import Fusion, HybridParameters

# what normalize_linear gives every hit of a constant leg (Vespa's LinearNormalizer)
CONSTANT_LEG_NORM = 0.5


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
    """Vespa's ``normalize_linear`` over the window (a constant leg maps to 0.5)."""
    lo, hi = float(scores.min()), float(scores.max())
    if hi - lo <= 0.0:
        return np.full_like(scores, CONSTANT_LEG_NORM, dtype=np.float64)
    return (scores - lo) / (hi - lo)


def reciprocal_ranks(scores: np.ndarray, k: float, *, retrieved: np.ndarray | None = None
                     ) -> np.ndarray:
    """``1 / (k + rank)`` per hit; 0 where ``retrieved`` is False."""
    rr = 1.0 / (k + competition_ranks(scores))
    return rr if retrieved is None else np.where(retrieved, rr, 0.0)


def retrieved_masks(lex: np.ndarray, vec: np.ndarray, depth: int | None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Which hits each leg retrieved (see ``rrf_textbook`` in the module docstring)."""
    if depth is None:
        return lex > 0.0, np.ones(vec.shape, dtype=bool)
    return (lex > 0.0) & (competition_ranks(lex) <= depth), competition_ranks(vec) <= depth


def fused_scores(candidates: Sequence[Candidate], params: HybridParameters,
                 depth: int | None = None) -> np.ndarray:
    """Fused score of every candidate, in input order. ``depth``: how many hits each leg
    returned (``rrf_textbook`` only; None: every candidate counts as retrieved by the vector
    leg and every BM25 > 0 by the lexical leg)."""
    if not candidates:
        return np.zeros(0)
    lex = np.array([c.lexical for c in candidates], dtype=np.float64)
    vec = np.array([c.vector for c in candidates], dtype=np.float64)
    k = float(params.rrf_k)
    if params.fusion == Fusion.rrf:
        return reciprocal_ranks(lex, k) + reciprocal_ranks(vec, k)
    if params.fusion == Fusion.rrf_textbook:
        lex_in, vec_in = retrieved_masks(lex, vec, depth)
        return (reciprocal_ranks(lex, k, retrieved=lex_in)
                + reciprocal_ranks(vec, k, retrieved=vec_in))
    if params.fusion == Fusion.score:
        return score_fusion(lex, vec, params.alpha, params.saturation)
    return params.alpha * min_max(vec) + (1.0 - params.alpha) * min_max(lex)


def score_fusion(lex: np.ndarray, vec: np.ndarray, alpha: float, saturation: float
                 ) -> np.ndarray:
    """``alpha * closeness + (1 - alpha) * bm25 / (bm25 + saturation)`` (window-free)."""
    lex = np.maximum(np.asarray(lex, dtype=np.float64), 0.0)
    return alpha * np.asarray(vec, dtype=np.float64) + (1.0 - alpha) * lex / (lex + saturation)


def fuse(
    candidates: Sequence[Candidate], params: HybridParameters, depth: int | None = None
) -> list[tuple[Candidate, float]]:
    """Candidates with their fused score, best first (ties broken by id)."""
    scores = fused_scores(candidates, params, depth)
    paired = list(zip(candidates, scores.tolist(), strict=True))
    paired.sort(key=lambda p: (-p[1], p[0].id))
    return paired
