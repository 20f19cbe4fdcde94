"""The gateway's outer layer, as plain ASGI: body-size guard, API key, request metrics, timing.

Plain ASGI rather than ``@app.middleware("http")``: Starlette's ``BaseHTTPMiddleware`` runs
every request through an extra task and memory streams, which cost ~1 ms of CPU per request
at the gateway's latency target (measured with ``bench/load.py``).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import MutableMapping
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clipsearch.body_limit import counting_receive, guarded_call
from clipsearch.http_errors import error_response
from clipsearch.image_payloads import FORM_OVERHEAD, base64_body_limit
from clipsearch.settings import Settings
from services.api.schemas import MAX_QUERY_PARTS
from services.api.state import ApiState

# Paths served without an API key (health checks, the page, the API description).
TOO_LARGE = "image_too_large"
OPEN_PATHS = frozenset({"/", "/health", "/ready", "/metrics", "/docs", "/openapi.json",
                        "/redoc"})


def body_limit(content_type: str, settings: Settings) -> int:
    """The largest request body accepted: one image file in a multipart upload, or as many
    base64 images as a JSON search may carry (one per query part)."""
    if content_type.startswith("multipart/"):
        return settings.max_image_bytes + FORM_OVERHEAD
    return base64_body_limit(MAX_QUERY_PARTS, settings.max_image_bytes)


def route_template(scope: Scope) -> str:
    """The matched route's path template (low cardinality), set on the scope by the router."""
    path = getattr(scope.get("route"), "path", None)
    return str(path) if path else "unmatched"


class GatewayMiddleware:
    """Refuses oversized bodies: from ``Content-Length`` before the body is read, and by
    counting the bytes of a streamed (chunked) body as the app reads it
    (``clipsearch.body_limit``); refuses requests without the configured API key (compared in
    constant time); counts every response by route, method and status; adds
    ``X-Response-Time-Ms`` (the time inside the app, up to the response headers)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        refusal = self._refusal(scope)
        status = {"code": 500}

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
                elapsed = (time.perf_counter() - started) * 1000
                headers = list(message.get("headers", []))
                headers.append((b"x-response-time-ms", f"{elapsed:.2f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            if refusal is not None:
                await refusal(scope, receive, timed_send)
            else:
                headers = Headers(scope=scope)
                limit = body_limit(headers.get("content-type", ""), self.settings)
                await guarded_call(self.app, scope,
                                   counting_receive(receive, limit, TOO_LARGE), timed_send,
                                   TOO_LARGE)
        finally:
            self._count(scope, status["code"])

    def _refusal(self, scope: Scope) -> JSONResponse | None:
        headers = Headers(scope=scope)
        declared = headers.get("content-length", "")
        limit = body_limit(headers.get("content-type", ""), self.settings)
        if declared.isdigit() and int(declared) > limit:
            return error_response(413, TOO_LARGE,
                                  f"request body is {declared} bytes; the limit is {limit} "
                                  f"bytes (images up to {self.settings.max_image_bytes} bytes)")
        key = self.settings.api_key
        if key and scope["path"] not in OPEN_PATHS and not hmac.compare_digest(
                headers.get("x-api-key", "").encode(), key.encode()):
            return error_response(401, "unauthorized", "missing or wrong X-API-Key header")
        return None

    @staticmethod
    def _count(scope: MutableMapping[str, Any], status: int) -> None:
        app = scope.get("app")
        state: ApiState | None = getattr(getattr(app, "state", None), "api", None)
        if state is not None:
            state.metrics.requests.labels(route=route_template(scope), method=scope["method"],
                                          status=str(status)).inc()
