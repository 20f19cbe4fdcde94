"""``GET /search`` and ``POST /search``."""

from __future__ import annotations

import time
from collections import Counter
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile

from clipsearch.errors import ClipsearchError
from clipsearch.highlights import Analyzer, highlight
from clipsearch.http_errors import error_responses
from clipsearch.image_payloads import read_upload
from clipsearch.index.base import SearchIndex
from clipsearch.search import MAX_LIMIT, SearchResult
from services.api.collapse import collapsed_window
from services.api.generation_guard import Pinned, check_query_space, pin
from services.api.planner import PlannedQuery, fusion_echo, plan_search
from services.api.relevance import check_min_relevance, with_relevance
from services.api.schemas import (
    Facets,
    HitOut,
    ImageSearchForm,
    QueryEcho,
    SearchBody,
    SearchParams,
    SearchRequest,
    SearchResponse,
    Timings,
)
from services.api.state import ApiState, get_state

router = APIRouter(tags=["search"],
                   responses=error_responses(400, 401, 404, 409, 413, 422, 502, 503))


def image_url(doc_id: str) -> str:
    return f"/images/{quote(doc_id, safe='')}"


def _facets(result: SearchResult) -> Facets:
    return Facets(
        window=len(result.hits),
        dataset=dict(Counter(h.document.dataset for h in result.hits).most_common()),
        category=dict(Counter(h.document.category for h in result.hits
                              if h.document.category).most_common()),
    )


def _response(req: SearchParams, result: SearchResult, planned: PlannedQuery,
              timings: Timings, *, uploaded: bool, facets: Facets | None,
              pinned: Pinned, analyzer: Analyzer | None = None) -> SearchResponse:
    hits = [
        HitOut(
            id=h.id,
            score=h.score,
            scores=h.scores,
            captions=h.document.captions,
            dataset=h.document.dataset,
            category=h.document.category,
            split=h.document.split,
            image_url=image_url(h.id),
            collapsed=h.collapsed,
            relevance=h.relevance,
            highlights=highlight(analyzer, req.text, h.document.captions) if analyzer else [],
        )
        for h in result.hits
    ]
    hybrid = planned.plan.mode.value == "hybrid"
    echo = QueryEcho(
        q=req.q, image_id=req.image_id, dataset=req.dataset, category=req.category,
        split=req.split, uploaded_image=uploaded, vector_text=planned.vector_text,
        **fusion_echo(planned.plan.hybrid, planned.fusion_source) if hybrid else {},
    )
    return SearchResponse(
        query=echo, mode=planned.plan.mode, total=result.total,
        total_approximate=result.total_approximate, degraded=result.degraded,
        limit=req.limit, offset=req.offset, model=planned.model_id, hits=hits,
        facets=facets, timings_ms=timings,
        generation=pinned.generation.name if pinned.generation else None,
        index_model=pinned.generation.model_id if pinned.generation else None,
    )


async def _execute(planned: PlannedQuery, index: SearchIndex, want_facets: bool,
                   collapse: float | None = None) -> tuple[SearchResult, Facets | None]:
    plan = planned.plan
    if collapse is not None:  # pages of the collapsed window (services/api/collapse.py)
        top = await collapsed_window(index, plan, collapse)
        page = top.model_copy(update={"hits": top.hits[plan.offset:plan.offset + plan.limit]})
        return page, _facets(top) if want_facets else None
    if not want_facets:
        return await index.search(plan), None
    # Facets count the top MAX_LIMIT hits; one search serves both when the page lies inside.
    top = await index.search(plan.model_copy(update={"offset": 0, "limit": MAX_LIMIT}))
    facets = _facets(top)
    if plan.offset + plan.limit <= MAX_LIMIT:
        page = top.model_copy(update={"hits": top.hits[plan.offset:plan.offset + plan.limit]})
        return page, facets
    return await index.search(plan), facets


async def run_search(req: SearchParams, state: ApiState,
                     upload: bytes | None = None) -> SearchResponse:
    started = time.perf_counter()
    mode = req.mode.value
    try:
        pinned = await pin(state.index)  # one generation for the whole request
        check_query_space(pinned, state.embedder, req, upload)
        calibration = state.calibration.get(pinned.generation.name if pinned.generation
                                            else None)
        check_min_relevance(req.min_relevance, req.mode, calibration)
        planned = await plan_search(req, index=pinned.index, embedder=state.embedder,
                                    candidates=state.settings.candidates,
                                    templates=state.settings.prompt_templates, upload=upload,
                                    max_image_bytes=state.settings.max_image_bytes,
                                    settings=state.settings,
                                    embedder_error=state.embedder_error,
                                    tuned=state.tuned_fusion.get())
        t0 = time.perf_counter()
        result, facets = await _execute(planned, pinned.index, req.facets, req.collapse)
        result = with_relevance(result, calibration, planned.plan.mode, req.offset,
                                req.min_relevance)
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
    return _response(req, result, planned, timings, uploaded=upload is not None, facets=facets,
                     pinned=pinned, analyzer=state.analyzer)


@router.get("/search", response_model=SearchResponse, summary="Search (query string)")
async def search_get(
    params: Annotated[SearchRequest, Query()],
    state: ApiState = Depends(get_state),
) -> SearchResponse:
    return await run_search(params, state)


@router.post("/search", response_model=SearchResponse, summary="Search (JSON body)")
async def search_post(
    body: SearchBody, state: ApiState = Depends(get_state)
) -> SearchResponse:
    return await run_search(body, state)


@router.post("/search/image", response_model=SearchResponse,
             summary="Search by an uploaded image (multipart), optionally with text",
)
async def search_image(
    form: Annotated[ImageSearchForm, Form()],
    image: Annotated[UploadFile, File(description="The query image")],
    state: ApiState = Depends(get_state),
) -> SearchResponse:
    data = await read_upload(image, state.settings.max_image_bytes)
    return await run_search(form, state, upload=data)
