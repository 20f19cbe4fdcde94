"""Liveness, readiness and Prometheus metrics.

``/ready`` is open without the API key, so it says what is down with a reason code and a safe
message only (details go to the server log), and it answers within about
``settings.ready_timeout_s`` whatever its dependencies do: the index and the encoder are
checked at once, each under that deadline. The index check reads rows (``ping``), so a damaged
data file shows here and not only in searches.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from clipsearch.errors import BackendUnavailable, ClipsearchError
from services.api.generation_guard import pin, space_status
from services.api.schemas import Health, Readiness
from services.api.state import ApiState, get_state

router = APIRouter(tags=["operations"])
log = logging.getLogger(__name__)
RETRY_AFTER_S = 5


@router.get("/health", response_model=Health, summary="Liveness: the process answers")
async def health() -> Health:
    return Health()


async def _checked(what: str, check: Awaitable[object], timeout_s: float) -> tuple[str, object]:
    """``("ok", result)`` or ``("down: <reason>: <safe message>", None)`` within the deadline."""
    try:
        return "ok", await asyncio.wait_for(check, timeout_s)
    except TimeoutError:
        log.warning("/ready: the %s check took longer than %.1f s", what, timeout_s)
        return f"down: timeout: the {what} did not answer within {timeout_s:g} s", None
    except ClipsearchError as exc:
        return f"down: {exc.reason}: {exc.message}", None
    except Exception as exc:  # a failing dependency must not turn /ready into a 500
        log.exception("/ready: the %s check failed", what, exc_info=exc)
        return f"down: {what}_error: the {what} check failed (see the server log)", None


async def _index_check(state: ApiState) -> int:
    await state.index.ping()
    return await state.index.count()


async def _encoder_check(state: ApiState) -> None:
    if state.embedder is None:
        raise BackendUnavailable(state.embedder_error or "no encoder is configured",
                                 reason="encoder_unavailable")
    await state.embedder.ping()


async def _generation_check(state: ApiState) -> tuple[str | None, str | None]:
    """The active generation and whether the encoder embeds into its space; a mismatch
    leaves the gateway ready (lexical and image_id search work) but says so."""
    try:
        pinned = await pin(state.index)
    except ClipsearchError as exc:
        return None, f"unverified: {exc.message}"
    name = pinned.generation.name if pinned.generation else None
    return name, space_status(pinned.generation, state.embedder)


@router.get("/ready", response_model=Readiness,
            responses={503: {"model": Readiness}},
            summary="Readiness: the index and the encoder answer (within ~1.5 s)")
async def ready(state: ApiState = Depends(get_state)) -> JSONResponse:
    timeout = state.settings.ready_timeout_s
    (index_status, docs), (encoder_status, _) = await asyncio.gather(
        _checked("index", _index_check(state), timeout),
        _checked("encoder", _encoder_check(state), timeout),
    )
    ok = index_status == "ok" and encoder_status == "ok"
    gen, space = await _generation_check(state)
    body = Readiness(status="ok" if ok else "unavailable", index=index_status,
                     encoder=encoder_status, documents=docs if isinstance(docs, int) else None,
                     generation=gen, embedding_space=space)
    headers = None if ok else {"Retry-After": str(RETRY_AFTER_S)}
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503, headers=headers)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(state: ApiState = Depends(get_state)) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
