"""The search gateway: FastAPI app factory with lifespan-managed index and encoder."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, Response

from clipsearch import __version__
from clipsearch.embedder import Embedder
from clipsearch.http_errors import error_response, install_error_handlers
from clipsearch.index import open_index
from clipsearch.index.base import SearchIndex
from clipsearch.settings import Settings
from services.api.embedder_factory import open_embedder
from services.api.metrics import ApiMetrics
from services.api.routes import documents, health, locate, search
from services.api.state import ApiState

_FORM_OVERHEAD = 64 * 1024  # room for the form fields next to the largest allowed image
_OPEN_PATHS = {"/", "/health", "/ready", "/metrics", "/docs", "/openapi.json", "/redoc"}


def create_app(
    settings: Settings,
    *,
    index: SearchIndex | None = None,
    embedder: Embedder | None = None,
) -> FastAPI:
    """Build the gateway. ``index``/``embedder`` given here are used as they are (tests);
    otherwise they are opened from ``settings`` at startup and closed at shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_index = index is None
        idx = index if index is not None else open_index(settings)
        if own_index:
            await idx.ensure_ready()
        emb, emb_error = (embedder, None) if embedder is not None else await open_embedder(
            settings)
        app.state.api = ApiState(settings=settings, index=idx, embedder=emb,
                                 metrics=ApiMetrics(), embedder_error=emb_error)
        try:
            yield
        finally:
            if embedder is None and emb is not None:
                await emb.close()
            if own_index:
                await idx.close()

    app = FastAPI(
        title="clipsearch",
        version=__version__,
        summary="Hybrid text + image search over captioned image collections (CLIP + BM25)",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST"], allow_headers=["*"])

    @app.middleware("http")
    async def _count_and_guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > settings.max_image_bytes + _FORM_OVERHEAD:
            # Refuse before the multipart body is received and spooled.
            response: Response = error_response(
                413, "image_too_large",
                f"request body is larger than {settings.max_image_bytes} bytes")
        elif settings.api_key and request.url.path not in _OPEN_PATHS and \
                request.headers.get("x-api-key") != settings.api_key:
            response = error_response(401, "unauthorized",
                                                "missing or wrong X-API-Key header")
        else:
            response = await call_next(request)
        route = _route_template(request)
        state: ApiState | None = getattr(request.app.state, "api", None)
        if state is not None:
            state.metrics.requests.labels(route=route, method=request.method,
                                          status=str(response.status_code)).inc()
        response.headers["X-Response-Time-Ms"] = f"{(time.perf_counter() - started) * 1000:.2f}"
        return response

    app.include_router(search.router)
    app.include_router(documents.router)
    app.include_router(health.router)
    app.include_router(locate.router)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        html = resources.files("services.api").joinpath("static/index.html").read_text()
        return HTMLResponse(html)

    return app


def _route_template(request: Request) -> str:
    """The matched route's path template (low cardinality), set by the router on the scope."""
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"
