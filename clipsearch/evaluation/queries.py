"""Labelled queries for retrieval evaluation, with graded relevance from the dataset's labels.

* ``category`` queries: the category name as a user would type it ("baseball field"); every
  image with that label is relevant (grade 1).
* ``caption`` queries: one held-out caption per image (a caption the index does not hold when
  the evaluation builds its own index). The image it was written for is relevant with grade 2
  and, with ``caption_relevance="category"``, every other image of its category with grade 1;
  with ``"item"`` only the image itself counts (known-item search, as in RSICD's R@k).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from pydantic import BaseModel

from clipsearch.evaluation.data import LabelledImage
from clipsearch.evaluation.zeroshot import category_phrase


class CaptionRelevance(StrEnum):
    item = "item"
    category = "category"


class QuerySet(BaseModel):
    name: str
    texts: dict[str, str]
    qrels: dict[str, dict[str, int]]

    def __len__(self) -> int:
        return len(self.texts)


def held_out_caption(item: LabelledImage) -> str | None:
    """The caption used as a query: the last one (the index keeps the others)."""
    return item.captions[-1] if len(item.captions) >= 2 else None


def category_queries(items: Sequence[LabelledImage]) -> QuerySet:
    by_cat: dict[str, dict[str, int]] = {}
    for it in items:
        if it.category:
            by_cat.setdefault(it.category, {})[it.doc_id] = 1
    texts = {f"cat:{c}": category_phrase(c) for c in sorted(by_cat)}
    return QuerySet(name="category", texts=texts,
                    qrels={f"cat:{c}": rel for c, rel in sorted(by_cat.items())})


def caption_queries(items: Sequence[LabelledImage], *,
                    relevance: CaptionRelevance = CaptionRelevance.item,
                    max_queries: int | None = None) -> QuerySet:
    """One query per image that has a caption to hold out (evenly thinned to max_queries)."""
    usable = [it for it in items if held_out_caption(it)]
    if max_queries is not None and len(usable) > max_queries:
        step = len(usable) / max_queries
        usable = [usable[int(i * step)] for i in range(max_queries)]
    by_cat: dict[str, list[str]] = {}
    for it in items:
        if it.category:
            by_cat.setdefault(it.category, []).append(it.doc_id)
    texts: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for it in usable:
        qid = f"cap:{it.doc_id}"
        texts[qid] = held_out_caption(it) or ""
        rel: dict[str, int] = {}
        if relevance == CaptionRelevance.category and it.category:
            rel = dict.fromkeys(by_cat[it.category], 1)
        rel[it.doc_id] = 2
        qrels[qid] = rel
    return QuerySet(name="caption", texts=texts, qrels=qrels)
