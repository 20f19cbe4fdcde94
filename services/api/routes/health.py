"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from clipsearch.errors import ClipsearchError
from services.api.schemas import Health, Readiness
from services.api.state import ApiState, get_state

router = APIRouter(tags=["operations"])


@router.get("/health", response_model=Health, summary="Liveness: the process answers")
async def health() -> Health:
    return Health()


@router.get("/ready", response_model=Readiness,
            responses={503: {"model": Readiness}},
            summary="Readiness: the index and the encoder are reachable")
async def ready(state: ApiState = Depends(get_state)) -> JSONResponse:
    index_status, encoder_status, docs = "ok", "ok", None
    try:
        await state.index.ping()
        docs = await state.index.count()
    except ClipsearchError as exc:
        index_status = f"down: {exc.message}"
    if state.embedder is None:
        encoder_status = f"down: {state.embedder_error or 'not configured'}"
    else:
        try:
            await state.embedder.ping()
        except ClipsearchError as exc:
            encoder_status = f"down: {exc.message}"
    ok = index_status == "ok" and encoder_status == "ok"
    body = Readiness(status="ok" if ok else "unavailable", index=index_status,
                     encoder=encoder_status, documents=docs)
    headers = None if ok else {"Retry-After": "5"}
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503, headers=headers)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(state: ApiState = Depends(get_state)) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
