"""Micro-batching groups concurrent requests without changing any result."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from clipsearch.errors import BackendUnavailable
from clipsearch.models.batching import MicroBatcher
from clipsearch.models.model import ClipEncoder


@pytest.fixture(scope="module")
def encoder(tiny_clip_dir: Path) -> ClipEncoder:
    return ClipEncoder.load(str(tiny_clip_dir), text_cache_size=0)


def test_concurrent_jobs_share_one_pass(encoder: ClipEncoder) -> None:
    batches: list[tuple[str, int, int]] = []
    batcher = MicroBatcher(encoder, max_items=64, max_wait_ms=200,
                           on_batch=lambda *b: batches.append(b))
    texts = [[f"a photo of {i}"] * (i % 3 + 1) for i in range(6)]
    rng = np.random.default_rng(0)
    pixels = [rng.normal(size=(n, 3, 224, 224)).astype(np.float32) for n in (1, 2)]
    start = threading.Barrier(8)
    futures: list = [None] * 8

    def submit(k: int) -> None:
        start.wait()
        futures[k] = (batcher.submit_texts(texts[k]) if k < 6
                      else batcher.submit_pixels(pixels[k - 6]))

    threads = [threading.Thread(target=submit, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results = [f.result(timeout=30) for f in futures]
    batcher.close()
    for k in range(6):
        assert np.allclose(results[k].vectors, encoder.embed_texts(texts[k]).vectors, atol=1e-5)
    for k in range(2):
        assert np.allclose(results[6 + k].vectors, encoder.embed_pixels(pixels[k]).vectors,
                           atol=1e-5)
    assert max(requests for _, requests, _ in batches) > 1  # something was merged
    assert sum(items for kind, _, items in batches if kind == "pixels") == 3


def test_failed_batch_reaches_its_callers_and_close(encoder: ClipEncoder) -> None:
    batcher = MicroBatcher(encoder, max_wait_ms=0)
    bad = batcher.submit_pixels(np.zeros((1, 3, 8, 8), dtype=np.float32))
    with pytest.raises(Exception):  # noqa: B017 - the model's own shape error
        bad.result(timeout=30)
    ok = batcher.submit_texts(["still works"])
    assert ok.result(timeout=30).vectors.shape == (1, 512)
    assert batcher.call(lambda: 41 + 1).result(timeout=30) == 42
    batcher.close()
    with pytest.raises(BackendUnavailable):
        batcher.submit_texts(["late"])
