"""``collapse=<cosine>``: near-duplicates folded within the fusion window, for both engines.

The gateway reads the top ``MAX_LIMIT`` hits of the search (the first page of the fusion
window, the same for every page), fetches their stored embeddings, collapses them with
``clipsearch.collapse`` and serves pages from the collapsed list, so page n+1 starts where
page n ended. Pages beyond the window are refused (422) rather than silently empty.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from clipsearch.collapse import collapse
from clipsearch.errors import InvalidRequest
from clipsearch.index.base import SearchIndex
from clipsearch.search import MAX_LIMIT, SearchPlan, SearchResult

FETCH_CONCURRENCY = 16


@runtime_checkable
class EmbeddingLookup(Protocol):
    """An engine that reads many stored embeddings in one go (the embedded engine)."""

    async def embeddings_of(self, ids: Sequence[str]) -> dict[str, np.ndarray]: ...


async def _embeddings(index: SearchIndex, ids: list[str]) -> dict[str, np.ndarray]:
    if isinstance(index, EmbeddingLookup):
        return await index.embeddings_of(ids)
    sem = asyncio.Semaphore(FETCH_CONCURRENCY)  # else one document GET each, 16 at a time

    async def one(doc_id: str) -> tuple[str, np.ndarray | None]:
        async with sem:
            doc = await index.get(doc_id)
        return doc_id, (np.asarray(doc.embedding, dtype=np.float32) if doc is not None
                        else None)

    pairs = await asyncio.gather(*(one(i) for i in ids))
    return {i: v for i, v in pairs if v is not None}


async def collapsed_window(index: SearchIndex, plan: SearchPlan,
                           threshold: float) -> SearchResult:
    """The window's hits with near-duplicates folded away (``collapsed`` set on each)."""
    if plan.offset + plan.limit > MAX_LIMIT:
        raise InvalidRequest(
            f"collapse works within the top {MAX_LIMIT} hits: offset + limit must be at most "
            f"{MAX_LIMIT} (got {plan.offset + plan.limit})", reason="collapse_window")
    top = await index.search(plan.model_copy(update={"offset": 0, "limit": MAX_LIMIT}))
    vectors = await _embeddings(index, [h.id for h in top.hits])
    hits = [h for h in top.hits if h.id in vectors]  # a document deleted meanwhile is left out
    if not hits:
        return top.model_copy(update={"hits": []})
    groups = collapse(np.stack([vectors[h.id] for h in hits]), threshold)
    kept = [hits[i].model_copy(update={"collapsed": n})
            for i, n in zip(groups.kept, groups.folded, strict=True)]
    return top.model_copy(update={"hits": kept})
