"""Zero-shot classification: each image against one prompt (set) per category (seed 001).

By default one prompt, "an aerial photograph of {category}" (the seed's); with
``ENSEMBLE_TEMPLATES`` a category's text vector is the normalised mean of its prompts'
embeddings, as in the CLIP paper's prompt ensembling; an image's class
scores are cosine similarities. Reported as hits@k: the true class among the top k.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from pydantic import BaseModel

from clipsearch.embeddings import l2_normalize
from clipsearch.evaluation.metrics import DEFAULT_HITS_KS, hits_at_k

# The seed's single prompt, for comparability with earlier numbers; the ensemble is an option
# (``clipsearch eval --prompt-ensemble``).
DEFAULT_TEMPLATES: tuple[str, ...] = ("an aerial photograph of {category}",)
ENSEMBLE_TEMPLATES: tuple[str, ...] = (
    "an aerial photograph of {category}",
    "a satellite image of {category}",
    "{category} seen from above",
)

TextEmbedder = Callable[[Sequence[str]], np.ndarray]


class ZeroShotResult(BaseModel):
    templates: list[str]
    categories: list[str]
    n_images: int
    hits: dict[str, float]
    per_category_hits1: dict[str, float]


def category_phrase(category: str) -> str:
    """``baseball_field`` -> ``baseball field``: what a prompt says."""
    return " ".join(category.replace("_", " ").replace("-", " ").split())


def class_vectors(categories: Sequence[str], templates: Sequence[str],
                  embed_texts: TextEmbedder) -> np.ndarray:
    if not templates or any("{category}" not in t for t in templates):
        raise ValueError("every prompt template must contain '{category}'")
    prompts = [t.format(category=category_phrase(c)) for c in categories for t in templates]
    vecs = np.asarray(embed_texts(prompts), dtype=np.float32)
    per_class = vecs.reshape(len(categories), len(templates), -1).mean(axis=1)
    return l2_normalize(per_class)


def zero_shot(image_vectors: np.ndarray, labels: Sequence[str], embed_texts: TextEmbedder, *,
              templates: Sequence[str] = DEFAULT_TEMPLATES,
              ks: Sequence[int] = DEFAULT_HITS_KS) -> ZeroShotResult:
    """hits@k of classifying every image (unit rows of ``image_vectors``) into its label."""
    if len(labels) != len(image_vectors):
        raise ValueError("one label per image vector is needed")
    categories = sorted(set(labels))
    if len(categories) < 2:
        raise ValueError("zero-shot classification needs at least two categories")
    index = {c: i for i, c in enumerate(categories)}
    truth = np.array([index[lab] for lab in labels])
    scores = np.asarray(image_vectors, dtype=np.float32) @ class_vectors(
        categories, templates, embed_texts).T
    per_cat = {c: hits_at_k(scores[truth == i], truth[truth == i], (1,))["hits@1"]
               for i, c in enumerate(categories)}
    return ZeroShotResult(templates=list(templates), categories=categories,
                          n_images=len(labels), hits=hits_at_k(scores, truth, ks),
                          per_category_hits1=per_cat)
