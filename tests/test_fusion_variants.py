"""Fusion variants (window / textbook RRF, linear with Vespa's constant-leg rule, score fusion),
the evaluation's neutral tie order, and the tuned fusion served per dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from clipsearch.evaluation.apply import tuned_entries
from clipsearch.evaluation.retrieval import ModeResult, ModeSetting
from clipsearch.evaluation.runner import EvalReport, IndexChoice, ModelReport
from clipsearch.evaluation.sweep import pick_best, sweep_settings
from clipsearch.evaluation.ties import neutral_order
from clipsearch.fusion import Candidate, fuse, fused_scores, min_max
from clipsearch.quality import tuned
from clipsearch.search import Fusion, HybridParameters, Mode
from clipsearch.settings import Settings
from services.api.app import create_app
from tests.api_fakes import FakeEmbedder, RecordingIndex, doc

TEXTBOOK = HybridParameters(fusion=Fusion.rrf_textbook, rrf_k=60)
WINDOW = HybridParameters(fusion=Fusion.rrf, rrf_k=60)


def cands(rows: list[tuple[str, float, float]]) -> list[Candidate]:
    return [Candidate(i, lex, vec) for i, lex, vec in rows]


def test_textbook_rrf_ignores_legs_that_did_not_retrieve() -> None:
    window = cands([("a", 5.0, 0.60), ("b", 0.0, 0.90), ("c", 2.0, 0.50), ("d", 0.0, 0.40)])
    scores = dict(zip("abcd", fused_scores(window, TEXTBOOK, depth=2).tolist(), strict=True))
    # lexical: a (rank 1) and c (rank 2) matched; vector depth 2: b (1) and a (2)
    assert scores["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert scores["b"] == pytest.approx(1 / 61)
    assert scores["c"] == pytest.approx(1 / 62)  # vector rank 3 > depth: nothing from it
    assert scores["d"] == 0.0
    # the window variant gives every hit both legs, so a non-match still earns lexical rank 3
    win = dict(zip("abcd", fused_scores(window, WINDOW).tolist(), strict=True))
    assert win["b"] == pytest.approx(1 / 63 + 1 / 61)
    assert win["d"] == pytest.approx(1 / 63 + 1 / 64)


def test_textbook_rrf_order_differs_from_window() -> None:
    # a vector-only hit at vector rank 1 vs a hit both legs retrieved lower down
    window = cands([("both", 1.0, 0.50), ("vec", 0.0, 0.90), ("x", 0.0, 0.70),
                    ("y", 0.0, 0.60)])
    assert fuse(window, TEXTBOOK, depth=4)[0][0].id == "both"
    assert fused_scores(window, TEXTBOOK, depth=4)[1] == pytest.approx(1 / 61)


def test_constant_leg_normalises_to_half_like_vespa() -> None:
    assert min_max(np.array([3.0, 3.0, 3.0])).tolist() == [0.5, 0.5, 0.5]
    linear = HybridParameters(fusion=Fusion.linear, alpha=0.25)
    window = cands([("a", 0.0, 0.9), ("b", 0.0, 0.6), ("c", 0.0, 0.3)])  # no lexical match
    assert fused_scores(window, linear).tolist() == pytest.approx(
        [0.25 * 1.0 + 0.75 * 0.5, 0.25 * 0.5 + 0.75 * 0.5, 0.75 * 0.5])


def test_score_fusion_is_window_free() -> None:
    params = HybridParameters(fusion=Fusion.score, alpha=0.7, saturation=3.0)
    window = cands([("a", 6.0, 0.6), ("b", 0.0, 0.8)])
    alone = fused_scores(window, params)
    assert alone.tolist() == pytest.approx([0.7 * 0.6 + 0.3 * 6 / 9, 0.7 * 0.8])
    grown = fused_scores([*window, Candidate("c", 30.0, 0.99)], params)
    assert grown[:2].tolist() == pytest.approx(alone.tolist())


def test_score_fusion_lets_a_flat_leg_barely_move_the_order() -> None:
    """An untrained model's closeness barely varies: the lexical leg decides; a trained
    model's spread lets the vector leg overrule weak lexical evidence."""
    params = HybridParameters()  # the default: score fusion
    assert params.fusion == Fusion.score
    flat = cands([("match", 2.0, 0.500), ("noise", 0.0, 0.505)])
    assert fuse(flat, params)[0][0].id == "match"
    spread = cands([("match", 0.3, 0.50), ("close", 0.0, 0.75)])
    assert fuse(spread, params)[0][0].id == "close"


def test_neutral_order_is_seeded_and_ignores_input_order_and_ids() -> None:
    hits = [(f"airport_{i:03d}", 1.0) for i in range(40)] + [("zzz", 2.0)]
    a = neutral_order(hits, "q1")
    assert a[0] == "zzz"
    assert a == neutral_order(list(reversed(hits)), "q1")
    assert a[1:] != sorted(a[1:])  # not id order
    assert neutral_order(hits, "q2") != a  # each query has its own shuffle
    assert neutral_order(hits, "q1", seed=1) != a


def test_sweep_covers_every_fusion() -> None:
    settings = sweep_settings(alphas=[0.5], rrf_ks=[60], saturations=[3.0])
    assert {s.hybrid.fusion for s in settings} == set(Fusion)
    assert len({s.label for s in settings}) == len(settings)


def _report(tmp_path: Path) -> EvalReport:
    setting = ModeSetting(mode=Mode.hybrid, hybrid=HybridParameters(
        fusion=Fusion.linear, alpha=0.8))
    other = ModeSetting(mode=Mode.hybrid, hybrid=HybridParameters(fusion=Fusion.rrf))
    results = [ModeResult(setting=other, label=other.label, metrics={"caption": {"ndcg@10": 0.5}}),
               ModeResult(setting=setting, label=setting.label,
                          metrics={"caption": {"ndcg@10": 0.7}})]
    sweep = pick_best(results, "ndcg@10", ["caption"])
    tuned_result = ModeResult(setting=setting, label=setting.label,
                              metrics={"caption": {"ndcg@10": 0.66}})
    model = ModelReport(model="m", datasets=["demo"], images=3, skipped_images=0,
                        captions_held_out=True, queries={"caption": 3}, retrieval=[],
                        sweep=sweep, sweep_split=["val"], tuned=tuned_result, seconds=1.0)
    return EvalReport(source=str(tmp_path), splits=["test"], index=IndexChoice.fresh,
                      caption_relevance="item", objective="ndcg@10", models=[model])


def test_apply_entry_records_choice_and_report_splits(tmp_path: Path) -> None:
    entries = tuned_entries(_report(tmp_path), as_default=True)
    assert set(entries) == {"demo", "*"}
    e = entries["demo"]
    assert (e.hybrid.fusion, e.hybrid.alpha) == (Fusion.linear, 0.8)
    assert (e.chosen_on, e.objective_chosen) == ("val", 0.7)
    assert (e.reported_on, e.objective_reported) == ("test", 0.66)


def test_api_serves_the_tuned_fusion_per_dataset(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    index = RecordingIndex([doc(i) for i in range(3)])
    with TestClient(create_app(settings, index=index, embedder=FakeEmbedder())) as c:
        r = c.get("/search", params={"q": "river", "dataset": "demo"})
        assert r.json()["query"]["fusion_source"] == "default"
        assert r.json()["query"]["fusion"] == "score"
        path = tuned.apply(settings, tuned_entries(_report(tmp_path)))  # while serving
        r = c.get("/search", params={"q": "river", "dataset": "demo"})
        echo = r.json()["query"]
        assert (echo["fusion"], echo["alpha"], echo["fusion_source"]) == (
            "linear", 0.8, "tuned:demo")
        assert index.plans[-1].hybrid.fusion == Fusion.linear
        # another dataset, or none: the default; explicit parameters always win
        assert c.get("/search", params={"q": "river"}).json()["query"]["fusion_source"] == \
            "default"
        r = c.get("/search", params={"q": "river", "dataset": "demo", "rrf_k": 5,
                                     "fusion": "rrf_textbook"})
        assert (r.json()["query"]["fusion_source"], r.json()["query"]["rrf_k"]) == (
            "request", 5)
        info = c.get("/fusion").json()
        assert info["tuned"]["demo"]["chosen_on"] == "val" and info["error"] is None
        path.write_text("{not json", encoding="utf-8")
        r = c.get("/search", params={"q": "river", "dataset": "demo"})
        assert r.status_code == 200 and r.json()["query"]["fusion_source"] == "default"
        assert "not a tuned-fusion file" in c.get("/fusion").json()["error"]
