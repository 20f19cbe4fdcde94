"""The search gateway: FastAPI app factory with lifespan-managed index and encoder."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse

from clipsearch import __version__
from clipsearch.embedder import Embedder
from clipsearch.http_errors import install_error_handlers
from clipsearch.index import open_index
from clipsearch.index.base import SearchIndex
from clipsearch.settings import Settings
from services.api.embedder_factory import open_embedder
from services.api.maintenance import flush_owed_loop
from services.api.metrics import ApiMetrics
from services.api.middleware import GatewayMiddleware
from services.api.routes import documents, health, locate, quality, search
from services.api.state import ApiState


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
        upkeep = asyncio.create_task(flush_owed_loop(idx)) if own_index else None
        try:
            yield
        finally:
            if upkeep is not None:
                upkeep.cancel()
                await asyncio.gather(upkeep, return_exceptions=True)
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
    app.add_middleware(GatewayMiddleware, settings=settings)
    if settings.cors_origins:  # outermost: preflights and refusals get CORS headers too
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST"], allow_headers=["*"])

    app.include_router(search.router)
    app.include_router(documents.router)
    app.include_router(health.router)
    app.include_router(locate.router)
    app.include_router(quality.router)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        html = resources.files("services.api").joinpath("static/index.html").read_text()
        return HTMLResponse(html)

    return app

