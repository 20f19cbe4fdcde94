"""The encoder service: CLIP text and image embeddings over HTTP (FastAPI).

``create_app(settings, encoder=None)`` builds the app; without an encoder the lifespan loads
``settings.model``. ``serve(settings)`` runs it with uvicorn (``clipsearch encoder``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from clipsearch.body_limit import BodyLimitMiddleware
from clipsearch.embeddings import Embeddings
from clipsearch.encoder_api import EmbedResponse, EncoderInfo, TextEmbedRequest
from clipsearch.errors import BackendUnavailable
from clipsearch.http_errors import install_error_handlers
from clipsearch.models.local import LocalEmbedder
from clipsearch.models.model import ClipEncoder
from clipsearch.settings import Settings
from services.encoder.metrics import CONTENT_TYPE, EncoderMetrics
from services.encoder.uploads import (
    IMAGE_BODY_DOC,
    RequestTooLarge,
    check_content_length,
    max_request_bytes,
    read_images,
)

log = logging.getLogger(__name__)


def _embedder(request: Request) -> LocalEmbedder:
    embedder: LocalEmbedder | None = getattr(request.app.state, "embedder", None)
    if embedder is None:  # only before the lifespan has loaded the model
        raise BackendUnavailable("the model is still loading", reason="model_loading")
    return embedder


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _response(emb: Embeddings, embedder: LocalEmbedder) -> EmbedResponse:
    return EmbedResponse(model=emb.model_id, dim=emb.dim, embeddings=emb.vectors.tolist(),
                         space=embedder.encoder.space_id)


def _info(embedder: LocalEmbedder) -> EncoderInfo:
    enc = embedder.encoder
    return EncoderInfo(model=enc.model_id, dim=enc.dim, runtime=enc.runtime.name,
                       dtype=enc.runtime.dtype, device=enc.runtime.device,
                       max_text_tokens=enc.max_text_tokens,
                       image_size=enc.preprocess_spec.output_size[0],
                       space=enc.space_id,
                       fingerprint=enc.identity.fingerprint if enc.identity else None)


def _make_embedder(encoder: ClipEncoder, settings: Settings,
                   metrics: EncoderMetrics) -> LocalEmbedder:
    metrics.watch_cache(encoder.text_cache)
    return LocalEmbedder(encoder, settings, on_batch=metrics.observe_batch)


def create_app(settings: Settings, encoder: ClipEncoder | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if getattr(app.state, "embedder", None) is None:
            log.info("loading model %s", settings.model)
            loaded = await asyncio.to_thread(ClipEncoder.from_settings, settings)
            app.state.embedder = _make_embedder(loaded, settings, metrics)
        try:
            yield
        finally:
            await app.state.embedder.close()

    app = FastAPI(title="clipsearch encoder", version="0.1.0", lifespan=lifespan,
                  description="CLIP text and image embeddings (float32, unit length).")
    metrics = EncoderMetrics()
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.embedder = (_make_embedder(encoder, settings, metrics) if encoder is not None
                          else None)
    install_error_handlers(app)
    body_bytes = max_request_bytes(settings)
    app.add_middleware(BodyLimitMiddleware, limit_for=lambda _headers: body_bytes)

    @app.exception_handler(RequestTooLarge)
    async def _too_large(_: Request, exc: RequestTooLarge) -> JSONResponse:
        return exc.response()

    @app.middleware("http")
    async def _limit_and_measure(request: Request, call_next):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            check_content_length(request.headers.get("content-length"), settings)
            response = await call_next(request)
        except RequestTooLarge as exc:
            response = exc.response()
        route = getattr(request.scope.get("route"), "path", "unmatched")
        metrics.requests.labels(route, str(response.status_code)).inc()
        metrics.latency.labels(route).observe(time.perf_counter() - start)
        return response

    @app.get("/metrics", include_in_schema=False)
    async def prometheus(request: Request) -> Response:
        return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/info", response_model=EncoderInfo)
    async def info(embedder: LocalEmbedder = Depends(_embedder)) -> EncoderInfo:
        return _info(embedder)

    @app.post("/embed/text", response_model=EmbedResponse)
    async def embed_text(body: TextEmbedRequest,
                         embedder: LocalEmbedder = Depends(_embedder),
                         cfg: Settings = Depends(_settings)) -> EmbedResponse:
        if len(body.texts) > cfg.max_texts_per_request:
            raise RequestTooLarge(
                f"{len(body.texts)} texts in one request; the limit is "
                f"{cfg.max_texts_per_request}", reason="too_many_texts")
        return _response(await embedder.embed_texts(body.texts), embedder)

    @app.post("/embed/image", response_model=EmbedResponse, openapi_extra=IMAGE_BODY_DOC)
    async def embed_image(request: Request,
                          embedder: LocalEmbedder = Depends(_embedder),
                          cfg: Settings = Depends(_settings)) -> EmbedResponse:
        images = await read_images(request, cfg)
        return _response(await embedder.embed_images(images), embedder)

    return app


def serve(settings: Settings) -> None:
    """Run the encoder service with uvicorn on ``settings.host:settings.encoder_port``."""
    import uvicorn

    uvicorn.run(create_app(settings), host=settings.host, port=settings.encoder_port,
                log_level="info")
