"""One JSON error shape for every HTTP service, and the handlers that produce it."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from clipsearch.errors import (
    BackendError,
    BackendUnavailable,
    ClipsearchError,
    Conflict,
    ImageTooLarge,
    InvalidRequest,
    NotFound,
)

log = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    status: int
    reason: str
    message: str
    detail: list[dict[str, Any]] | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


def error_response(
    status: int,
    reason: str,
    message: str,
    detail: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(error=ErrorDetail(status=status, reason=reason, message=message,
                                       detail=detail))
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


def status_for(exc: ClipsearchError) -> int:
    if isinstance(exc, ImageTooLarge):
        return 413
    if isinstance(exc, InvalidRequest):
        return 422
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, BackendUnavailable):
        return 503
    if isinstance(exc, BackendError):
        return 502
    return 500


def _jsonable_errors(errors: Any) -> list[dict[str, Any]]:
    out = []
    for e in errors:
        item = {k: e.get(k) for k in ("loc", "msg", "type") if k in e}
        item["loc"] = [str(p) for p in item.get("loc", [])]
        out.append(item)
    return out


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ClipsearchError)
    async def _clipsearch_error(_: Request, exc: ClipsearchError) -> JSONResponse:
        status = status_for(exc)
        headers = None
        if isinstance(exc, BackendUnavailable):
            headers = {"Retry-After": str(exc.retry_after_s)}
        if status >= 500 and status != 503:
            log.error("request failed: %s", exc, exc_info=exc)
        return error_response(status, exc.reason, exc.message, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _jsonable_errors(exc.errors())
        first = errors[0] if errors else {}
        where = ".".join(p for p in first.get("loc", []) if p not in ("body", "query"))
        message = f"{where}: {first.get('msg')}" if where else str(first.get("msg", "invalid"))
        return error_response(422, "invalid_request", message, detail=errors)

    @app.exception_handler(HTTPException)
    async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
        reason = getattr(exc, "reason", None) or {
            404: "not_found", 405: "method_not_allowed", 401: "unauthorized",
            413: "too_large"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, reason, str(exc.detail),
                              headers=dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal_error", "internal error (this is a bug)")


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries that document the error shape for these statuses."""
    what = {400: "Malformed request body", 401: "Missing or wrong API key",
            404: "Unknown id", 409: "Conflicts with the index's state (e.g. "
            "embedding_space_mismatch)", 413: "Upload too large", 422: "Invalid parameters",
            502: "The index answered with an error", 503: "A dependency is down (Retry-After)"}
    return {s: {"model": ErrorBody, "description": what.get(s, "Error")} for s in statuses}
