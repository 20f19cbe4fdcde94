"""``clipsearch eval`` end to end: every metric for every mode, zero-shot, the sweep, reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipsearch.errors import InvalidRequest
from clipsearch.evaluation.report import write_report
from clipsearch.evaluation.retrieval import ModeResult, ModeSetting
from clipsearch.evaluation.runner import EvalConfig, EvalReport, IndexChoice, run_eval
from clipsearch.evaluation.sweep import pick_best
from clipsearch.search import Fusion, HybridParameters, Mode
from clipsearch.settings import Settings

METRICS = {"recall@1", "recall@5", "recall@10", "recall@50", "mrr@10", "ndcg@10"}
MODES = {"lexical", "vector", "hybrid (score α=0.7 s=3)"}


@pytest.fixture(scope="module")
def fresh_report(tiny_clip_dir: Path, sample_dataset, tmp_path_factory) -> EvalReport:  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path_factory.mktemp("unused"), model=str(tiny_clip_dir))
    cfg = EvalConfig(source=sample_dataset.manifest, splits=[], sweep=True,
                     sweep_alphas=[0.0, 0.5, 1.0], sweep_rrf_ks=[1, 60], sweep_saturations=[3.0],
                     calibrate=True)
    return run_eval(cfg, settings)


def test_every_metric_for_every_mode_and_query_set(fresh_report: EvalReport,
                                                   sample_dataset) -> None:  # type: ignore[no-untyped-def]
    (model,) = fresh_report.models
    assert model.images == len(sample_dataset.records)
    assert model.captions_held_out
    assert model.queries == {"category": len(sample_dataset.categories),
                             "caption": len(sample_dataset.records)}
    assert {r.label for r in model.retrieval} == MODES
    for r in model.retrieval:
        assert set(r.metrics) == {"category", "caption"}
        for metrics in r.metrics.values():
            assert set(metrics) == METRICS
            assert all(0.0 <= v <= 1.0 for v in metrics.values())
    assert model.zero_shot is not None
    assert set(model.zero_shot.hits) == {"hits@1", "hits@3", "hits@5", "hits@10"}
    assert model.zero_shot.hits["hits@5"] == 1.0  # 5 classes: the truth is always in the top 5


def test_lexical_finds_category_names_in_captions(fresh_report: EvalReport) -> None:
    # every sample caption names its category's noun family, so BM25 ranks the right images
    # first for at least the categories whose name is one of the caption words
    lexical = next(r for r in fresh_report.models[0].retrieval if r.setting.mode == Mode.lexical)
    assert lexical.metrics["category"]["mrr@10"] > 0.5


def test_sweep_picks_the_setting_with_the_best_reported_metric(
        fresh_report: EvalReport) -> None:
    sweep = fresh_report.models[0].sweep
    # score (3 alphas x 1 saturation) + linear (3) + window and textbook RRF (2 ks each)
    assert sweep is not None and len(sweep.points) == 10
    tuned = fresh_report.models[0].tuned
    assert tuned is not None and tuned.label == sweep.best.label  # the choice, re-measured
    for p in sweep.points:
        assert p.objective == pytest.approx(
            sum(p.metrics[q]["ndcg@10"] for q in sweep.query_sets) / len(sweep.query_sets))
    assert sweep.best.objective == max(p.objective for p in sweep.points)


def test_pick_best_on_known_numbers() -> None:
    def result(alpha: float, value: float) -> ModeResult:
        s = ModeSetting(mode=Mode.hybrid, hybrid=HybridParameters(fusion=Fusion.linear,
                                                                  alpha=alpha))
        return ModeResult(setting=s, label=s.label, metrics={"a": {"ndcg@10": value},
                                                             "b": {"ndcg@10": value / 2}})
    best = pick_best([result(0.1, 0.2), result(0.5, 0.9), result(0.9, 0.9)], "ndcg@10",
                     ["a", "b"])
    assert best.best.hybrid.alpha == 0.5  # the first of equals
    assert best.best.objective == pytest.approx(0.675)
    with pytest.raises(ValueError, match="not measured"):
        pick_best([result(0.1, 0.2)], "mrr@10", ["a"])


def test_reports_are_written(fresh_report: EvalReport, tmp_path: Path) -> None:
    written = write_report(fresh_report, tmp_path / "out")
    assert EvalReport.model_validate(json.loads(written.json_path.read_text())) == fresh_report
    md = written.markdown_path.read_text()
    assert "| lexical |" in md and "hybrid (rrf k=60)" in md and "**best**" in md
    assert written.chart_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # calibrated relevance: ECE in the table, a reliability diagram beside it
    c = fresh_report.models[0].calibration
    assert c is not None and c.quality is not None and 0.0 <= c.quality.ece <= 1.0
    assert c.hybrid == fresh_report.models[0].sweep.best.hybrid  # type: ignore[union-attr]
    assert "ECE" in md and "Ties: seeded shuffle" in md
    assert written.reliability_path is not None
    assert written.reliability_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_live_index_fed_by_the_feeder(tiny_clip_dir: Path, sample_dataset,
                                      tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from feeder.commands import run_feed
    from feeder.request import FeedRequest

    settings = Settings(data_dir=tmp_path / "data", model=str(tiny_clip_dir))
    fed = run_feed(settings, FeedRequest(source=sample_dataset.manifest, format="generic"))
    assert fed.indexed == len(sample_dataset.records)
    report = run_eval(EvalConfig(source=sample_dataset.manifest, splits=["test"],
                                 index=IndexChoice.live, zero_shot=False), settings)
    (model,) = report.models
    assert not model.captions_held_out
    test_images = [r for r in sample_dataset.records if r.split == "test"]
    assert model.queries["caption"] == len(test_images)
    lexical = next(r for r in model.retrieval if r.setting.mode == Mode.lexical)
    # the live index holds the query captions, so lexical finds every captioned image
    assert lexical.metrics["caption"]["recall@50"] == 1.0
    for r in model.retrieval:
        assert set(r.metrics["category"]) == METRICS


def test_unhappy_paths(tiny_clip_dir: Path, sample_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path, model=str(tiny_clip_dir))
    with pytest.raises(InvalidRequest, match="no images"):
        run_eval(EvalConfig(source=sample_dataset.manifest, splits=["nope"]), settings)
    with pytest.raises(InvalidRequest, match="cannot read"):
        run_eval(EvalConfig(source=tmp_path / "missing.jsonl"), settings)
    with pytest.raises(InvalidRequest, match="live index"):
        run_eval(EvalConfig(source=sample_dataset.manifest, index=IndexChoice.live,
                            models=["other-model"]), settings)
    with pytest.raises(ValueError, match="category"):
        run_eval(EvalConfig(source=sample_dataset.manifest, splits=[],
                            templates=["no placeholder"]), settings)
