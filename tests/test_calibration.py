"""Calibrated relevance: fitting, ECE / reliability, storage per index and generation, and
``relevance`` / ``min_relevance`` in the API."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from clipsearch.quality import calibration as cal
from clipsearch.search import HybridParameters
from clipsearch.settings import Settings
from services.api.app import create_app
from tests.api_fakes import FakeEmbedder, RecordingIndex, doc


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hits whose true P(relevant) is a known logistic function of the features."""
    rng = np.random.default_rng(seed)
    vec, lex, rank = rng.uniform(0.4, 0.8, n), rng.uniform(0, 1, n), rng.integers(1, 50, n)
    x = np.column_stack([vec, lex, np.log(rank)])
    p = 1 / (1 + np.exp(-(12 * vec + 3 * lex - 0.8 * np.log(rank) - 7)))
    return x, (rng.uniform(size=n) < p).astype(int)


def fitted() -> cal.Calibration:
    x, y = synthetic(4000, 1)
    return cal.fit(x.tolist(), y.tolist(), hybrid=HybridParameters(), fitted_on="val")


def test_fit_is_calibrated_on_held_out_data() -> None:
    c = fitted()
    x, y = synthetic(4000, 2)
    q = cal.reliability(c.predict(x.tolist()), y, "test")
    assert q.ece < 0.03 and q.samples == 4000 and sum(b.count for b in q.bins) == 4000
    # a constant guess at the base rate is calibrated on average but useless; a wrong
    # model is not calibrated
    assert cal.reliability(np.full(len(y), 0.95), y, "test").ece > 0.3
    assert c.coef[0] > 0 and c.coef[2] < 0  # closer and better-ranked: more relevant


def test_fit_refuses_one_class() -> None:
    with pytest.raises(ValueError, match="relevant and non-relevant"):
        cal.fit([[0.5, 0.0, 0.0]] * 3, [1, 1, 1], hybrid=HybridParameters(), fitted_on="x")


def test_storage_per_index_and_generation(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    c = fitted()
    cache = cal.CalibrationCache(settings)
    assert cache.get() is None and cache.get("g2") is None
    path = cal.save(settings, c)
    assert path.parent.name == "embedded-images"
    assert cache.get() == c and cache.get("g2") == c  # a generation falls back to the index's
    own = c.model_copy(update={"intercept": c.intercept + 1})
    cal.save(settings, own, generation="g2")
    assert cache.get("g2") == own and cache.get() == c
    path.write_text("[]", encoding="utf-8")
    assert cache.get() is None and "not a calibration file" in (cache.error or "")


def test_api_relevance_and_min_relevance(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    index = RecordingIndex([doc(i) for i in range(6)])
    with TestClient(create_app(settings, index=index, embedder=FakeEmbedder())) as c:
        r = c.get("/search", params={"q": "river", "min_relevance": 0.5})
        assert r.status_code == 422
        assert "calibrate" in r.json()["error"]["message"]
        hits = c.get("/search", params={"q": "river"}).json()["hits"]
        assert all(h["relevance"] is None for h in hits)

        cal.save(settings, fitted())
        hits = c.get("/search", params={"q": "river"}).json()["hits"]
        rel = [h["relevance"] for h in hits]
        assert all(0 < p < 1 for p in rel) and rel == sorted(rel, reverse=True)
        cut = (rel[1] + rel[2]) / 2
        kept = c.get("/search", params={"q": "river", "min_relevance": cut}).json()["hits"]
        assert [h["id"] for h in kept] == [h["id"] for h in hits[:2]]
        r = c.get("/search", params={"q": "river", "mode": "lexical", "min_relevance": 0.1})
        assert r.status_code == 422 and "hybrid" in r.json()["error"]["message"]
        assert c.get("/search", params={"q": "river", "min_relevance": 2}).status_code == 422
