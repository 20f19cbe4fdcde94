"""What the gateway holds while it runs, and the FastAPI dependencies that hand it out."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from clipsearch.embedder import Embedder
from clipsearch.index.base import SearchIndex
from clipsearch.settings import Settings
from services.api.metrics import ApiMetrics


@dataclass
class ApiState:
    settings: Settings
    index: SearchIndex
    embedder: Embedder | None
    metrics: ApiMetrics
    embedder_error: str | None = None


async def get_state(request: Request) -> ApiState:
    """Async on purpose: FastAPI runs a plain ``def`` dependency in a worker thread."""
    state: ApiState = request.app.state.api
    return state
