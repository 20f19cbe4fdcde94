"""Shadow evaluation of two generations: the paired randomisation test and the verdict."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from clipsearch.documents import ImageDocument
from clipsearch.embeddings import l2_normalize
from clipsearch.evaluation.data import LabelledImage
from clipsearch.evaluation.queries import CaptionRelevance
from clipsearch.evaluation.shadow import compare_generations, paired_randomisation
from clipsearch.evaluation.zeroshot import category_phrase
from clipsearch.index.embedded_generations import GenerationalEmbeddedIndex

DIM = 16
CATEGORIES = ["harbor", "forest", "desert"]


def test_randomisation_test_matches_scipy() -> None:
    rng = np.random.default_rng(3)
    a = rng.uniform(size=40)
    b = a + rng.normal(0.05, 0.2, size=40)
    ours = paired_randomisation(a, b, rounds=20_000)
    ref = stats.permutation_test((a, b), lambda x, y: np.mean(y - x), vectorized=False,
                                 permutation_type="samples", n_resamples=20_000,
                                 alternative="two-sided", random_state=1).pvalue
    assert abs(ours - ref) < 0.02
    assert paired_randomisation(a, a) == 1.0
    assert paired_randomisation(a, a + 0.1) < 0.001  # every query better
    assert paired_randomisation(a, b, rounds=5000) == paired_randomisation(a, b, rounds=5000)


def _direction(c: str) -> np.ndarray:
    return l2_normalize(np.random.default_rng(CATEGORIES.index(c)).normal(size=DIM))[0]


def _encoder(texts: Sequence[str]) -> np.ndarray:
    """Queries about a category point at its direction (plus noise)."""
    out = []
    rng = np.random.default_rng(99)
    for text in texts:
        c = next((c for c in CATEGORIES if category_phrase(c) in text), None)
        base = _direction(c) if c else rng.normal(size=DIM)
        out.append(l2_normalize(base + rng.normal(scale=0.3, size=DIM))[0])
    return np.stack(out)


@pytest.mark.asyncio(loop_scope="session")
async def test_the_generation_with_category_aware_vectors_wins(tmp_path: Path) -> None:
    items = [LabelledImage(id=f"{c}_{i}", path=tmp_path / "x.jpg", dataset="syn", category=c,
                           split="test", captions=[f"picture {i}", f"a {category_phrase(c)}"])
             for c in CATEGORIES for i in range(10)]
    rng = np.random.default_rng(5)

    def docs(good: bool) -> list[ImageDocument]:
        return [ImageDocument(
            id=it.doc_id, captions=it.captions[:1], dataset="syn", category=it.category,
            split="test", model_id="good" if good else "bad",
            embedding=[float(x) for x in l2_normalize(
                (_direction(it.category or "") if good else 0) + rng.normal(
                    scale=0.5 if good else 1.0, size=DIM))[0]]) for it in items]

    index = GenerationalEmbeddedIndex(tmp_path / "index", dim=DIM)
    await index.upsert(docs(good=False))
    g1 = await index.create_generation(model_id="good", space="b" * 64, dim=DIM)
    await index.at_generation(g1.name).upsert(docs(good=True))
    await index.complete_generation(g1.name)
    report = await compare_generations(index, "g0", g1.name, items,
                                       {"g0": _encoder, g1.name: _encoder},
                                       relevance=CaptionRelevance.category)
    await index.close()
    assert report.winner == g1.name and report.verdict.startswith(f"{g1.name} is better")
    vector = [c for c in report.comparisons
              if c.mode == "vector" and c.metric == "ndcg@10" and c.query_set == "caption"]
    assert vector[0].delta > 0.1 and vector[0].p_value < 0.01 and vector[0].queries == 30
    lexical = [c for c in report.comparisons if c.mode == "lexical"]
    assert lexical and all(c.delta == 0 and c.p_value == 1.0 for c in lexical)
    assert "| caption (30) | vector | ndcg@10 |" in report.to_markdown()
