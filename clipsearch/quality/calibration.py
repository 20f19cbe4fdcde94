"""Calibrated relevance: P(relevant) of a hybrid hit from its legs' scores and its rank.

Fused scores are not comparable across queries (RRF is a rank sum; the score fusion mixes
scales), so "how many results are good?" needs a model fitted on labelled queries: a
logistic regression (scikit-learn) on

* ``vector``: the hit's closeness,
* ``lexical``: its BM25 saturated as ``bm25 / (bm25 + 3)`` (0 when no term matched),
* ``log_rank``: ``log(rank)``, rank 1-based in the hybrid result list,

labelled by the evaluation's qrels (grade > 0). ``clipsearch eval --calibrate`` fits it on the
chosen split (``--choose-split``, else the evaluated one), reports the expected calibration
error (ECE, 10 equal-width bins) and a reliability diagram on the evaluated split, and
``--apply`` stores it per index (``clipsearch.quality.store``; per generation when one is
named) for the API: ``relevance`` per hybrid hit, ``min_relevance`` to cut the page.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from clipsearch.quality.store import quality_dir, write_json_atomic
from clipsearch.search import HybridParameters
from clipsearch.settings import Settings

FILE = "calibration.json"
FEATURES = ("vector", "lexical", "log_rank")
LEXICAL_SATURATION = 3.0
BINS = 10


def features(lexical: float | None, vector: float | None, rank: int) -> list[float]:
    lex = max(lexical or 0.0, 0.0)
    return [float(vector or 0.0), lex / (lex + LEXICAL_SATURATION), math.log(max(rank, 1))]


class ReliabilityBin(BaseModel):
    lower: float
    upper: float
    count: int
    mean_predicted: float | None
    fraction_relevant: float | None


class CalibrationQuality(BaseModel):
    split: str
    samples: int
    positives: int
    ece: float = Field(description="expected calibration error, 10 equal-width bins")
    bins: list[ReliabilityBin]


class Calibration(BaseModel):
    features: list[str] = Field(default_factory=lambda: list(FEATURES))
    coef: list[float]
    intercept: float
    hybrid: HybridParameters = Field(description="the fusion the ranks were taken under")
    fitted_on: str
    samples: int
    positives: int
    model: str = ""
    quality: CalibrationQuality | None = None

    def predict(self, rows: Sequence[Sequence[float]]) -> np.ndarray:
        x = np.asarray(rows, dtype=np.float64).reshape(-1, len(self.coef))
        z = x @ np.asarray(self.coef) + self.intercept
        return 1.0 / (1.0 + np.exp(-z))


def fit(rows: Sequence[Sequence[float]], labels: Sequence[int], *, hybrid: HybridParameters,
        fitted_on: str, model: str = "") -> Calibration:
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(rows, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if len(set(y.tolist())) < 2:
        raise ValueError("calibration needs relevant and non-relevant hits")
    lr = LogisticRegression(C=10.0, max_iter=1000).fit(x, y)
    return Calibration(coef=[float(c) for c in lr.coef_[0]], intercept=float(lr.intercept_[0]),
                       hybrid=hybrid, fitted_on=fitted_on, samples=len(y),
                       positives=int(y.sum()), model=model)


def reliability(probs: np.ndarray, labels: np.ndarray, split: str,
                bins: int = BINS) -> CalibrationQuality:
    """ECE = sum over bins of |bin| / n * |mean predicted - fraction relevant|."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1], right=False), 0, bins - 1)
    out, ece = [], 0.0
    for b in range(bins):
        mask = which == b
        n = int(mask.sum())
        mean_p = float(p[mask].mean()) if n else None
        frac = float(y[mask].mean()) if n else None
        if n:
            ece += n / len(p) * abs(mean_p - frac)  # type: ignore[operator]
        out.append(ReliabilityBin(lower=float(edges[b]), upper=float(edges[b + 1]), count=n,
                                  mean_predicted=mean_p, fraction_relevant=frac))
    return CalibrationQuality(split=split, samples=len(p), positives=int(y.sum()), ece=ece,
                              bins=out)


def calibration_path(settings: Settings, generation: str | None = None) -> Path:
    return quality_dir(settings, generation) / FILE


def save(settings: Settings, calibration: Calibration, generation: str | None = None) -> Path:
    path = calibration_path(settings, generation)
    write_json_atomic(path, calibration)
    return path


def load(path: Path) -> Calibration | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return Calibration.model_validate(json.loads(text))
    except (ValueError, ValidationError) as exc:
        raise ValueError(f"{path} is not a calibration file: {exc}") from exc


@dataclass
class CalibrationCache:
    """The API's view: the generation's own calibration if it has one, else the index's;
    re-read when a file changes. A broken file counts as none (``error`` says why)."""

    settings: Settings
    _seen: dict[Path, tuple[tuple[int, int] | None, Calibration | None]] = field(
        default_factory=dict)
    error: str | None = None

    def _read(self, path: Path) -> Calibration | None:
        try:
            st = path.stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        cached = self._seen.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        value = None
        if stamp is not None:
            try:
                value = load(path)
                self.error = None
            except ValueError as exc:
                self.error = str(exc)
        self._seen[path] = (stamp, value)
        return value

    def get(self, generation: str | None = None) -> Calibration | None:
        if generation:
            own = self._read(calibration_path(self.settings, generation))
            if own is not None:
                return own
        return self._read(calibration_path(self.settings))
