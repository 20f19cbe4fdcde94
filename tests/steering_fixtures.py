"""Synthetic embeddings for the steering tests: an attribute along a known direction."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from clipsearch.embeddings import l2_normalize
from clipsearch.steering.probe import Probe, ProbeQuality


def attribute_embeddings(n: int, dim: int, *, seed: int = 0,
                         strength: float = 0.6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unit embeddings, labels, true unit direction): positives lean along the direction."""
    rng = np.random.default_rng(seed)
    direction = l2_normalize(rng.normal(size=dim))[0]
    labels = rng.random(n) < 0.3
    x = rng.normal(size=(n, dim)) / np.sqrt(dim)
    x += np.where(labels, strength, -strength / 4)[:, None] * direction
    return l2_normalize(x), labels, direction


def make_probe(direction: np.ndarray, *, name: str = "textness", model_id: str = "m",
               attribute: str = "text_label") -> Probe:
    unit = l2_normalize(direction)[0]
    return Probe(name=name, attribute=attribute, model_id=model_id, dim=int(unit.shape[0]),
                 direction=unit.tolist(), coef_norm=3.0, intercept=-0.5,
                 quality=ProbeQuality(accuracy=0.9, balanced_accuracy=0.9, n_train=30,
                                      n_test=10),
                 n_positive=12, n_negative=28, created=datetime.now(UTC))
