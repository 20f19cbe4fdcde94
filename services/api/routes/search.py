"""``GET /search`` and ``POST /search``."""

from __future__ import annotations

import time
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query

from clipsearch.errors import ClipsearchError
from clipsearch.search import SearchResult
from services.api.planner import plan_search
from services.api.schemas import (
    HitOut,
    LegScoresOut,
    QueryEcho,
    SearchRequest,
    SearchResponse,
    Timings,
)
from services.api.state import ApiState, get_state

router = APIRouter(tags=["search"])


def image_url(doc_id: str) -> str:
    return f"/images/{quote(doc_id, safe='')}"


def _response(req: SearchRequest, result: SearchResult, model: str | None,
              timings: Timings) -> SearchResponse:
    hits = [
        HitOut(
            id=h.id,
            score=h.score,
            scores=LegScoresOut(lexical=h.scores.lexical, vector=h.scores.vector),
            captions=h.document.captions,
            dataset=h.document.dataset,
            category=h.document.category,
            split=h.document.split,
            image_url=image_url(h.id),
        )
        for h in result.hits
    ]
    hybrid = req.mode.value == "hybrid"
    echo = QueryEcho(
        q=req.q, image_id=req.image_id, dataset=req.dataset, category=req.category,
        split=req.split,
        fusion=req.fusion if hybrid else None,
        rrf_k=req.rrf_k if hybrid and req.fusion.value == "rrf" else None,
        alpha=req.alpha if hybrid and req.fusion.value == "linear" else None,
    )
    return SearchResponse(
        query=echo, mode=req.mode, total=result.total,
        total_approximate=result.total_approximate, degraded=result.degraded,
        limit=req.limit, offset=req.offset, model=model, hits=hits, timings_ms=timings,
    )


async def run_search(req: SearchRequest, state: ApiState) -> SearchResponse:
    started = time.perf_counter()
    mode = req.mode.value
    try:
        planned = await plan_search(req, index=state.index, embedder=state.embedder,
                                    candidates=state.settings.candidates)
        t0 = time.perf_counter()
        result = await state.index.search(planned.plan)
        search_ms = (time.perf_counter() - t0) * 1000
    except ClipsearchError as exc:
        state.metrics.searches.labels(mode=mode, status=exc.reason).inc()
        raise
    total_ms = (time.perf_counter() - started) * 1000
    m = state.metrics
    m.stage_seconds.labels(mode=mode, stage="encode").observe(planned.encode_ms / 1000)
    m.stage_seconds.labels(mode=mode, stage="search").observe(search_ms / 1000)
    m.stage_seconds.labels(mode=mode, stage="total").observe(total_ms / 1000)
    m.searches.labels(mode=mode, status="ok").inc()
    timings = Timings(encode=round(planned.encode_ms, 3), search=round(search_ms, 3),
                      total=round(total_ms, 3))
    return _response(req, result, planned.model_id, timings)


@router.get("/search", response_model=SearchResponse, summary="Search (query string)")
async def search_get(
    params: Annotated[SearchRequest, Query()],
    state: ApiState = Depends(get_state),
) -> SearchResponse:
    return await run_search(params, state)


@router.post("/search", response_model=SearchResponse, summary="Search (JSON body)")
async def search_post(
    body: SearchRequest, state: ApiState = Depends(get_state)
) -> SearchResponse:
    return await run_search(body, state)
