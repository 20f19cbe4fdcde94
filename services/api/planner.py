"""Turn an HTTP search request into a SearchPlan: encode the query, resolve image ids."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from clipsearch.embedder import Embedder
from clipsearch.embeddings import check_dimension, l2_normalize
from clipsearch.errors import BackendUnavailable, NotFound
from clipsearch.index.base import SearchIndex
from clipsearch.search import Filters, HybridParameters, Mode, SearchPlan
from services.api.schemas import SearchParams


@dataclass
class PlannedQuery:
    plan: SearchPlan
    model_id: str | None
    encode_ms: float
    vector_text: str | None


def prompt_for(text: str, datasets: list[str], templates: dict[str, str]) -> str:
    """The text the vector leg encodes: the dataset's template (or ``*``) around the query.

    A template applies when the request filters on exactly one dataset that has one, or when a
    ``*`` template exists. The query is substituted with ``str.replace``, never ``format``, so
    braces in user text are harmless.
    """
    template = None
    if len(datasets) == 1:
        template = templates.get(datasets[0])
    template = template or templates.get("*")
    return template.replace("{q}", text) if template else text


def _need_embedder(embedder: Embedder | None) -> Embedder:
    if embedder is None:
        raise BackendUnavailable("the encoder is not available; lexical mode still works",
                                 reason="encoder_unavailable")
    return embedder


async def plan_search(
    req: SearchParams,
    *,
    index: SearchIndex,
    embedder: Embedder | None,
    candidates: int,
    templates: dict[str, str] | None = None,
    upload: bytes | None = None,
) -> PlannedQuery:
    started = time.perf_counter()
    vector: list[float] | None = None
    model_id: str | None = None
    vector_text: str | None = None
    if req.mode in (Mode.vector, Mode.hybrid):
        parts: list[np.ndarray] = []
        if req.image_id:
            doc = await index.get(req.image_id)
            if doc is None:
                raise NotFound(f"no indexed image with id {req.image_id!r}")
            parts.append(np.asarray(doc.embedding, dtype=np.float32))
            model_id = doc.model_id or None
        if upload is not None:
            emb = await _need_embedder(embedder).embed_images([upload])
            parts.append(emb.vectors[0])
            model_id = emb.model_id
        if req.text:
            vector_text = (prompt_for(req.text, req.dataset, templates or {})
                           if req.prompt else req.text)
            emb = await _need_embedder(embedder).embed_texts([vector_text])
            parts.append(emb.vectors[0])
            model_id = emb.model_id
        for part in parts:
            check_dimension(part, index.dim)
        # Several query parts (text + image) are averaged on the unit sphere.
        vector = l2_normalize(np.sum(parts, axis=0))[0].tolist()
    # Hybrid without text has no lexical leg: it is a vector search.
    mode = Mode.vector if (req.mode == Mode.hybrid and not req.text) else req.mode
    plan = SearchPlan(
        mode=mode,
        text=req.text,
        vector=vector,
        limit=req.limit,
        offset=req.offset,
        filters=Filters(dataset=req.dataset, category=req.category, split=req.split),
        hybrid=HybridParameters(fusion=req.fusion, rrf_k=req.rrf_k, alpha=req.alpha),
        candidates=candidates,
        exclude_ids=[req.image_id] if (req.image_id and req.exclude_image) else [],
    )
    return PlannedQuery(plan, model_id, (time.perf_counter() - started) * 1000, vector_text)
