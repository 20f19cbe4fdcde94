"""Metric definitions on hand-computed cases, cross-checked against pytrec_eval (trec_eval)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import pytrec_eval

from clipsearch.evaluation.metrics import (
    evaluate_run,
    hits_at_k,
    ndcg_at_k,
    per_query_metrics,
    recall_at_k,
    reciprocal_rank_at_k,
)


def test_hand_computed_single_query() -> None:
    ranked = ["d3", "d1", "d7", "d2", "d9"]
    judged = {"d1": 1, "d2": 2, "d4": 1, "d8": 0}
    assert recall_at_k(ranked, judged, 1) == 0.0
    assert recall_at_k(ranked, judged, 2) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, judged, 5) == pytest.approx(2 / 3)
    assert reciprocal_rank_at_k(ranked, judged, 10) == 0.5
    assert reciprocal_rank_at_k(ranked, judged, 1) == 0.0
    dcg = 1 / math.log2(3) + 2 / math.log2(5)
    idcg = 2 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(ranked, judged, 10) == pytest.approx(dcg / idcg)


def test_perfect_and_empty_runs() -> None:
    qrels = {"q1": {"a": 1, "b": 1}, "q2": {"c": 2}}
    perfect = evaluate_run(qrels, {"q1": ["a", "b"], "q2": ["c"]}, recall_ks=(1, 2), cutoff=10)
    assert perfect == {"recall@1": 0.75, "recall@2": 1.0, "mrr@10": 1.0, "ndcg@10": 1.0}
    empty = evaluate_run(qrels, {}, recall_ks=(1,), cutoff=10)
    assert empty == {"recall@1": 0.0, "mrr@10": 0.0, "ndcg@10": 0.0}


def test_duplicates_in_a_run_count_once() -> None:
    per = per_query_metrics({"q": {"a": 1, "b": 1}}, {"q": ["a", "a", "b"]}, recall_ks=(2,))
    assert per["q"]["recall@2"] == 1.0


def test_bad_cutoff_is_refused() -> None:
    with pytest.raises(ValueError):
        per_query_metrics({"q": {"a": 1}}, {"q": ["a"]}, recall_ks=(0,))


def test_hits_at_k_counts_ties_against_the_truth() -> None:
    scores = np.array([[0.9, 0.1, 0.0], [0.5, 0.5, 0.1], [0.1, 0.2, 0.3]])
    hits = hits_at_k(scores, [0, 1, 0], ks=(1, 2, 3))
    assert hits == {"hits@1": pytest.approx(1 / 3), "hits@2": pytest.approx(2 / 3),
                    "hits@3": 1.0}
    with pytest.raises(ValueError):
        hits_at_k(scores, [0, 1], ks=(1,))


def _random_case(seed: int) -> tuple[dict[str, dict[str, int]], dict[str, list[str]]]:
    rng = random.Random(seed)
    docs = [f"d{i:03d}" for i in range(120)]
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, list[str]] = {}
    for q in range(40):
        qid = f"q{q:02d}"
        judged = rng.sample(docs, rng.randint(1, 25))
        qrels[qid] = {d: rng.choice([0, 1, 1, 2]) for d in judged}
        if not any(qrels[qid].values()):
            qrels[qid][judged[0]] = 1
        run[qid] = rng.sample(docs, rng.randint(0, 80))
    return qrels, run


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_pytrec_eval_on_the_same_run(seed: int) -> None:
    qrels, run = _random_case(seed)
    ours = per_query_metrics(qrels, run, recall_ks=(1, 5, 10, 50), cutoff=10)
    # trec_eval ranks by score: give strictly decreasing scores in our order.
    trec_run = {q: {d: float(len(r) - i) for i, d in enumerate(r)} for q, r in run.items()}
    trec_run10 = {q: {d: float(10 - i) for i, d in enumerate(r[:10])} for q, r in run.items()}
    for q in qrels:  # pytrec_eval skips queries without a run; ours scores them 0
        trec_run.setdefault(q, {})
        trec_run10.setdefault(q, {})
    full = pytrec_eval.RelevanceEvaluator(qrels, {"recall.1,5,10,50", "ndcg_cut.10"})
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"})  # MRR@10: truncate the run
    theirs = full.evaluate(trec_run)
    theirs_rr = rr.evaluate(trec_run10)
    for q in qrels:
        if not run[q]:
            assert all(v == 0.0 for v in ours[q].values())
            continue
        for k in (1, 5, 10, 50):
            assert ours[q][f"recall@{k}"] == pytest.approx(theirs[q][f"recall_{k}"], abs=1e-9)
        assert ours[q]["ndcg@10"] == pytest.approx(theirs[q]["ndcg_cut_10"], abs=1e-9)
        assert ours[q]["mrr@10"] == pytest.approx(theirs_rr[q]["recip_rank"], abs=1e-9)
