"""``clipsearch eval``: zero-shot classification, retrieval per mode, and the fusion sweep.

For each model: embed the evaluated split's images, classify them zero-shot, then search an
index per mode with category-name and held-out-caption queries. The index is either a fresh
embedded index of the split built by the evaluation (``index="fresh"``: the held-out caption
is left out of it) or the live index the settings name (``index="live"``: searched with
dataset/split filters; its captions are all indexed, which the report says).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from clipsearch.errors import InvalidRequest
from clipsearch.evaluation.data import load_labelled
from clipsearch.evaluation.encoding import EvalEncoder, ImageVectors
from clipsearch.evaluation.evalindex import build_eval_index, eval_index_settings
from clipsearch.evaluation.metrics import DEFAULT_HITS_KS, DEFAULT_RECALL_KS
from clipsearch.evaluation.queries import (
    CaptionRelevance,
    QuerySet,
    caption_queries,
    category_queries,
)
from clipsearch.evaluation.retrieval import (
    ModeResult,
    ModeSetting,
    calibration_samples,
    evaluate_settings,
    standard_settings,
)
from clipsearch.evaluation.sweep import (
    DEFAULT_ALPHAS,
    DEFAULT_RRF_KS,
    DEFAULT_SATURATIONS,
    SweepResult,
    pick_best,
    sweep_settings,
)
from clipsearch.evaluation.ties import TIE_BREAKING
from clipsearch.evaluation.zeroshot import DEFAULT_TEMPLATES, ZeroShotResult, zero_shot
from clipsearch.index import open_index
from clipsearch.index.base import SearchIndex
from clipsearch.quality.calibration import Calibration, fit, reliability
from clipsearch.search import Filters, HybridParameters, Mode
from clipsearch.settings import Settings

log = logging.getLogger(__name__)


class IndexChoice(StrEnum):
    fresh = "fresh"
    live = "live"


class EvalConfig(BaseModel):
    source: Path
    format: str = "auto"
    dataset: str | None = None
    splits: list[str] = Field(default_factory=lambda: ["test"])
    models: list[str] = Field(default_factory=list, description="empty: the settings' model")
    index: IndexChoice = IndexChoice.fresh
    templates: list[str] = Field(default_factory=lambda: list(DEFAULT_TEMPLATES))
    hybrid: HybridParameters = Field(default_factory=HybridParameters)
    caption_relevance: CaptionRelevance = CaptionRelevance.item
    max_caption_queries: int | None = Field(1000, ge=1)
    zero_shot: bool = True
    sweep: bool = False
    sweep_alphas: list[float] = Field(default_factory=lambda: list(DEFAULT_ALPHAS))
    sweep_rrf_ks: list[int] = Field(default_factory=lambda: list(DEFAULT_RRF_KS))
    sweep_saturations: list[float] = Field(default_factory=lambda: list(DEFAULT_SATURATIONS))
    choose_split: str | None = Field(
        None, description="split the sweep chooses on (e.g. val); None: the evaluated split")
    calibrate: bool = Field(False, description="fit calibrated relevance (hybrid hits)")
    compare: list[HybridParameters] = Field(
        default_factory=list, description="more hybrid fusions measured beside the standard")
    objective: str = "ndcg@10"
    recall_ks: list[int] = Field(default_factory=lambda: list(DEFAULT_RECALL_KS))
    hits_ks: list[int] = Field(default_factory=lambda: list(DEFAULT_HITS_KS))
    cutoff: int = Field(10, ge=1, le=100)
    candidates: int = Field(100, ge=1, le=5000)
    work_dir: Path | None = Field(None, description="where fresh indexes go (default: a temp dir)")


class ModelReport(BaseModel):
    model: str
    datasets: list[str] = Field(default_factory=list)
    images: int
    skipped_images: int
    captions_held_out: bool
    queries: dict[str, int]
    zero_shot: ZeroShotResult | None = None
    retrieval: list[ModeResult]
    sweep: SweepResult | None = None
    sweep_split: list[str] | None = Field(None, description="split(s) the sweep chose on")
    tuned: ModeResult | None = Field(
        None, description="the sweep's best setting measured on the evaluated split")
    calibration: Calibration | None = None
    seconds: float


class EvalReport(BaseModel):
    source: str
    splits: list[str]
    index: IndexChoice
    caption_relevance: CaptionRelevance
    objective: str
    tie_breaking: str = TIE_BREAKING
    models: list[ModelReport]


@dataclass
class Prepared:
    """One split ready to search: its embedded images, labelled queries and index."""

    images: ImageVectors
    query_sets: list[QuerySet]
    vectors: dict[str, np.ndarray]
    index: SearchIndex
    filters: Filters


async def _prepare(cfg: EvalConfig, settings: Settings, encoder: EvalEncoder,
                   splits: list[str], work_dir: Path) -> Prepared:
    items = load_labelled(cfg.source, fmt=cfg.format, dataset=cfg.dataset, splits=splits)
    if not items:
        raise InvalidRequest(f"no images in split(s) {splits} of {cfg.source}")
    images = encoder.images(items)
    if len(images.items) == 0:
        raise InvalidRequest("no image of the evaluated split could be decoded")
    log.info("%s: %d images embedded (%d skipped)", encoder.model_id, len(images.items),
             len(images.skipped))
    query_sets = [category_queries(images.items),
                  caption_queries(images.items, relevance=cfg.caption_relevance,
                                  max_queries=cfg.max_caption_queries)]
    query_sets = [qs for qs in query_sets if len(qs)]
    vectors = _query_vectors(query_sets, encoder)
    index, filters = await _open_eval_index(cfg, settings, encoder, images, work_dir)
    return Prepared(images, query_sets, vectors, index, filters)


def _served(cfg: EvalConfig, sweep: SweepResult | None) -> HybridParameters:
    """The fusion the API will serve: the sweep's choice, else the configured one."""
    return sweep.best.hybrid if sweep is not None else cfg.hybrid


async def _fit_calibration(cfg: EvalConfig, prep: Prepared, hybrid: HybridParameters,
                           split: str, model: str) -> Calibration:
    rows, labels = await calibration_samples(prep.index, prep.query_sets, prep.vectors, hybrid,
                                             filters=prep.filters, candidates=cfg.candidates)
    try:
        return fit(rows, labels, hybrid=hybrid, fitted_on=split, model=model)
    except ValueError as exc:
        raise InvalidRequest(f"cannot calibrate on split {split}: {exc}") from exc


async def _sweep(cfg: EvalConfig, prep: Prepared) -> SweepResult:
    settings = sweep_settings(cfg.sweep_alphas, cfg.sweep_rrf_ks, cfg.sweep_saturations)
    points = await evaluate_settings(prep.index, prep.query_sets, prep.vectors, settings,
                                     filters=prep.filters, candidates=cfg.candidates,
                                     recall_ks=cfg.recall_ks, cutoff=cfg.cutoff)
    return pick_best(points, cfg.objective, [qs.name for qs in prep.query_sets])


async def _evaluate_model(cfg: EvalConfig, settings: Settings, model: str,
                          work_dir: Path) -> ModelReport:
    started = time.perf_counter()
    encoder = EvalEncoder.load(model, settings)
    sweep, sweep_split, fitted = None, None, None
    if (cfg.sweep or cfg.calibrate) and cfg.choose_split:  # choose on one split ...
        choose = await _prepare(cfg, settings, encoder, [cfg.choose_split], work_dir / "choose")
        try:
            if cfg.sweep:
                sweep, sweep_split = await _sweep(cfg, choose), [cfg.choose_split]
            if cfg.calibrate:
                fitted = await _fit_calibration(cfg, choose, _served(cfg, sweep),
                                                cfg.choose_split, model)
        finally:
            await choose.index.close()
    prep = await _prepare(cfg, settings, encoder, cfg.splits, work_dir / "eval")  # ... report
    images = prep.images
    zs = None
    if cfg.zero_shot and len({it.category for it in images.items if it.category}) >= 2:
        labelled = [(i, it.category) for i, it in enumerate(images.items) if it.category]
        zs = zero_shot(images.vectors[[i for i, _ in labelled]], [c for _, c in labelled],
                       encoder.texts, templates=cfg.templates, ks=cfg.hits_ks)
    tuned = None
    try:
        retrieval = await evaluate_settings(
            prep.index, prep.query_sets, prep.vectors,
            standard_settings(cfg.hybrid) + [ModeSetting(mode=Mode.hybrid, hybrid=h)
                                             for h in cfg.compare if h != cfg.hybrid],
            filters=prep.filters, candidates=cfg.candidates, recall_ks=cfg.recall_ks,
            cutoff=cfg.cutoff)
        if cfg.sweep and sweep is None:
            sweep, sweep_split = await _sweep(cfg, prep), cfg.splits
        if sweep is not None:
            best = ModeSetting(mode=Mode.hybrid, hybrid=sweep.best.hybrid)
            [tuned] = await evaluate_settings(
                prep.index, prep.query_sets, prep.vectors, [best], filters=prep.filters,
                candidates=cfg.candidates, recall_ks=cfg.recall_ks, cutoff=cfg.cutoff)
        if cfg.calibrate:
            split = ",".join(cfg.splits) or "all"
            if fitted is None:  # fitted and measured on the same split (said in the report)
                fitted = await _fit_calibration(cfg, prep, _served(cfg, sweep), split, model)
            rows, labels = await calibration_samples(
                prep.index, prep.query_sets, prep.vectors, fitted.hybrid, filters=prep.filters,
                candidates=cfg.candidates)
            fitted.quality = reliability(fitted.predict(rows), np.asarray(labels), split)
    finally:
        await prep.index.close()
    return ModelReport(
        model=model, datasets=sorted({it.dataset for it in images.items}),
        images=len(images.items), skipped_images=len(images.skipped),
        captions_held_out=cfg.index == IndexChoice.fresh,
        queries={qs.name: len(qs) for qs in prep.query_sets}, zero_shot=zs,
        retrieval=retrieval, sweep=sweep, sweep_split=sweep_split, tuned=tuned,
        calibration=fitted,
        seconds=time.perf_counter() - started)


def _query_vectors(query_sets: list[QuerySet], encoder: EvalEncoder) -> dict[str, np.ndarray]:
    pairs = [(qid, text) for qs in query_sets for qid, text in qs.texts.items()]
    if not pairs:
        return {}
    vecs = encoder.texts([t for _, t in pairs])
    return {qid: vecs[i] for i, (qid, _) in enumerate(pairs)}


async def _open_eval_index(cfg: EvalConfig, settings: Settings, encoder: EvalEncoder,
                           images: ImageVectors, work_dir: Path) -> tuple[SearchIndex, Filters]:
    if cfg.index == IndexChoice.live:
        index = open_index(settings)
        await index.ensure_ready()
        datasets = sorted({it.dataset for it in images.items})
        splits = sorted({it.split for it in images.items if it.split})
        return index, Filters(dataset=datasets, split=splits)
    if work_dir.exists():
        shutil.rmtree(work_dir)  # this evaluation's own folder: never reuse stale documents
    idx_settings = eval_index_settings(settings, work_dir, encoder.model_id, encoder.dim)
    index, refused = await build_eval_index(idx_settings, images, encoder.model_id)
    if refused:
        log.warning("%d documents were refused by the index (invalid labels)", refused)
    return index, Filters()


async def run_eval_async(cfg: EvalConfig, settings: Settings) -> EvalReport:
    models = cfg.models or [settings.model]
    if cfg.index == IndexChoice.live and (len(models) > 1 or models[0] != settings.model):
        raise InvalidRequest("the live index holds one model's embeddings: evaluate it with "
                             "that model (CLIPSEARCH_MODEL), or use the fresh index")
    reports = []
    with tempfile.TemporaryDirectory(prefix="clipsearch-eval-") as tmp:
        work = cfg.work_dir or Path(tmp)
        for n, model in enumerate(models):
            reports.append(await _evaluate_model(cfg, settings, model, work / f"model-{n}"))
    return EvalReport(source=str(cfg.source), splits=cfg.splits, index=cfg.index,
                      caption_relevance=cfg.caption_relevance, objective=cfg.objective,
                      models=reports)


def run_eval(cfg: EvalConfig, settings: Settings) -> EvalReport:
    return asyncio.run(run_eval_async(cfg, settings))
