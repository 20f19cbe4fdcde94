"""Ranking metrics over a run (ranked ids per query) and qrels (graded relevance per query).

Definitions follow trec_eval (the tests cross-check them against ``pytrec_eval`` on the
same run):

* ``recall@k``: relevant documents (grade > 0) in the top k / all relevant documents.
* ``mrr@k``: 1 / rank of the first relevant document in the top k, else 0.
* ``ndcg@k``: DCG with linear gain ``grade`` and discount ``1 / log2(rank + 1)``, divided by
  the DCG of the ideal ordering of all judged documents (trec_eval's ``ndcg_cut``).
* ``hits@k`` (zero-shot classification): 1 when the true class is in the top k.

A query without relevant documents scores 0 on every metric (it is still counted), so that a
query set cannot look better by losing its hard queries; callers drop such queries up front.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Sequence[str]]

DEFAULT_RECALL_KS: tuple[int, ...] = (1, 5, 10, 50)
DEFAULT_HITS_KS: tuple[int, ...] = (1, 3, 5, 10)


def _relevant(judgements: Mapping[str, int]) -> set[str]:
    return {doc for doc, grade in judgements.items() if grade > 0}


def recall_at_k(ranked: Sequence[str], judgements: Mapping[str, int], k: int) -> float:
    relevant = _relevant(judgements)
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def reciprocal_rank_at_k(ranked: Sequence[str], judgements: Mapping[str, int], k: int) -> float:
    for rank, doc in enumerate(ranked[:k], start=1):
        if judgements.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


def _dcg(grades: Sequence[float]) -> float:
    return sum(g / math.log2(i + 2) for i, g in enumerate(grades) if g > 0)


def ndcg_at_k(ranked: Sequence[str], judgements: Mapping[str, int], k: int) -> float:
    ideal = _dcg(sorted((g for g in judgements.values() if g > 0), reverse=True)[:k])
    if ideal <= 0.0:
        return 0.0
    return _dcg([max(judgements.get(doc, 0), 0) for doc in ranked[:k]]) / ideal


def metric_names(recall_ks: Sequence[int] = DEFAULT_RECALL_KS, cutoff: int = 10) -> list[str]:
    return [*(f"recall@{k}" for k in recall_ks), f"mrr@{cutoff}", f"ndcg@{cutoff}"]


def per_query_metrics(
    qrels: Qrels, run: Run, *, recall_ks: Sequence[int] = DEFAULT_RECALL_KS, cutoff: int = 10
) -> dict[str, dict[str, float]]:
    """``{query_id: {metric: value}}`` for every query in ``qrels`` (missing runs score 0)."""
    if any(k < 1 for k in recall_ks) or cutoff < 1:
        raise ValueError("cut-offs must be >= 1")
    out: dict[str, dict[str, float]] = {}
    for qid, judgements in qrels.items():
        ranked = list(dict.fromkeys(run.get(qid, ())))  # a document counts once
        scores = {f"recall@{k}": recall_at_k(ranked, judgements, k) for k in recall_ks}
        scores[f"mrr@{cutoff}"] = reciprocal_rank_at_k(ranked, judgements, cutoff)
        scores[f"ndcg@{cutoff}"] = ndcg_at_k(ranked, judgements, cutoff)
        out[qid] = scores
    return out


def mean_metrics(per_query: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Mean of every metric over the queries (empty input: empty result)."""
    if not per_query:
        return {}
    names = list(next(iter(per_query.values())))
    return {m: float(np.mean([scores[m] for scores in per_query.values()])) for m in names}


def evaluate_run(
    qrels: Qrels, run: Run, *, recall_ks: Sequence[int] = DEFAULT_RECALL_KS, cutoff: int = 10
) -> dict[str, float]:
    return mean_metrics(per_query_metrics(qrels, run, recall_ks=recall_ks, cutoff=cutoff))


def hits_at_k(scores: np.ndarray, truth: Sequence[int] | np.ndarray,
              ks: Sequence[int] = DEFAULT_HITS_KS) -> dict[str, float]:
    """Classification hits@k: ``scores`` is (n_items, n_classes), ``truth`` the class index.

    Ties are counted pessimistically: a class tied with the true class ranks before it.
    """
    arr = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(truth, dtype=np.int64)
    if arr.ndim != 2 or arr.shape[0] != labels.shape[0]:
        raise ValueError("scores must be (n_items, n_classes) with one label per item")
    if arr.shape[0] == 0:
        raise ValueError("no items to classify")
    true_scores = arr[np.arange(arr.shape[0]), labels]
    rank = np.sum(arr >= true_scores[:, None], axis=1)  # the truth itself plus ties and better
    return {f"hits@{k}": float(np.mean(rank <= k)) for k in ks}
