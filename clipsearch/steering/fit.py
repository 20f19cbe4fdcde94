"""Fitting a probe: logistic regression on unit embeddings, accuracy on a held-out split.

scikit-learn's ``LogisticRegression`` (lbfgs, L2) does the fitting: a well-kept library with
a tested solver beats a hand-written gradient loop here; the split is stratified so both
classes appear in the held-out part.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.model_selection import train_test_split

from clipsearch.embeddings import l2_normalize
from clipsearch.errors import InvalidRequest
from clipsearch.steering.probe import Probe, ProbeQuality

MIN_PER_CLASS = 4


class FitOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    test_fraction: float = Field(0.25, gt=0, lt=1)
    c: float = Field(1.0, gt=0, description="inverse L2 regularisation strength")
    seed: int = 0
    max_iter: int = Field(2000, ge=10)


def fit_probe(embeddings: np.ndarray, labels: np.ndarray, *, name: str, attribute: str,
              model_id: str, options: FitOptions | None = None) -> Probe:
    """A probe from unit embeddings (n, dim) and boolean labels (n,).

    Raises ``InvalidRequest`` when a class has fewer than ``MIN_PER_CLASS`` examples (no
    honest held-out accuracy is possible) or the shapes disagree.
    """
    opts = options or FitOptions()
    x = l2_normalize(np.asarray(embeddings, dtype=np.float32))
    y = np.asarray(labels, dtype=bool).reshape(-1)
    if x.shape[0] != y.shape[0]:
        raise InvalidRequest(f"{x.shape[0]} embeddings but {y.shape[0]} labels",
                             reason="invalid_probe_data")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if min(n_pos, n_neg) < MIN_PER_CLASS:
        raise InvalidRequest(
            f"a probe needs at least {MIN_PER_CLASS} positive and {MIN_PER_CLASS} negative "
            f"images, got {n_pos} positive and {n_neg} negative", reason="invalid_probe_data")
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=opts.test_fraction, stratify=y, random_state=opts.seed)
    clf = LogisticRegression(C=opts.c, class_weight="balanced", max_iter=opts.max_iter)
    clf.fit(x_train, y_train)
    predicted = clf.predict(x_test)
    coef = np.asarray(clf.coef_, dtype=np.float64).reshape(-1)
    norm = float(np.linalg.norm(coef))
    if not np.isfinite(norm) or norm == 0.0:
        raise InvalidRequest("the probe learnt no direction (all weights zero)",
                             reason="invalid_probe_data")
    return Probe(
        name=name, attribute=attribute, model_id=model_id, dim=int(x.shape[1]),
        direction=(coef / norm).tolist(), coef_norm=norm,
        intercept=float(np.asarray(clf.intercept_).reshape(-1)[0]),
        quality=ProbeQuality(
            accuracy=float(accuracy_score(y_test, predicted)),
            balanced_accuracy=float(balanced_accuracy_score(y_test, predicted)),
            n_train=len(y_train), n_test=len(y_test)),
        n_positive=n_pos, n_negative=n_neg, created=datetime.now(UTC))
