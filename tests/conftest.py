"""Shared fixtures: a tiny CLIP built offline and a small generated dataset."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Feeds in tests encode a few dozen images in one process (threads): spawning a worker pool
# would cost more than the encoding. tests/test_feed_parallel.py sets its own worker count and
# covers the process pool (the default on a real machine), its kill and its equivalence.
os.environ.setdefault("CLIPSEARCH_FEED_WORKERS", "0")


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight CLIP + real CLIP tokenizer, saved with save_pretrained."""
    from clipsearch.models.tiny import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip") / "model")


@pytest.fixture(scope="module")
def clip(tiny_clip_dir: Path):  # type: ignore[no-untyped-def]
    """The tiny CLIP loaded as every service loads a model (fp32 torch, one thread)."""
    from clipsearch.models.model import ClipEncoder

    return ClipEncoder.load(str(tiny_clip_dir), threads=1, runtime="torch")


@pytest.fixture(scope="session")
def sample_dataset(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A small generated image set in the generic JSONL manifest format."""
    from clipsearch.datasets.sample import make_sample_dataset

    return make_sample_dataset(tmp_path_factory.mktemp("sample-data"))


@pytest.fixture(scope="session")
def word_category(sample_dataset) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Caption words of the sample set, each used by one category's captions only (read from
    the records, never hard-coded): word -> category."""
    from tests.sample_words import category_words

    return {word: category for category, word in category_words(sample_dataset.records).items()}


@pytest.fixture(scope="session")
def word(word_category: dict[str, str]) -> str:
    """A caption word of one category."""
    return next(iter(word_category))


@pytest.fixture(scope="class")
def loopback_servers() -> Iterator[list[Any]]:
    """Loopback Vespa servers a test class starts (it appends them), stopped after the class;
    fails the class if the stand-in saw a request outside Vespa's documented formats."""
    started: list[Any] = []
    yield started
    violations = [v for s in started for v in s.violations]
    for server in started:
        server.__exit__(None, None, None)
    assert violations == [], violations
