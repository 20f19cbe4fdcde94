"""What the gateway holds while it runs, and the FastAPI dependencies that hand it out."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from clipsearch.embedder import Embedder
from clipsearch.highlights import Analyzer
from clipsearch.index.base import SearchIndex
from clipsearch.quality.calibration import CalibrationCache
from clipsearch.quality.tuned import TunedFusionCache, fusion_path
from clipsearch.settings import Settings
from services.api.metrics import ApiMetrics


@dataclass
class ApiState:
    settings: Settings
    index: SearchIndex
    embedder: Embedder | None
    metrics: ApiMetrics
    embedder_error: str | None = None
    # the index's tuned fusion per dataset (clipsearch eval --apply), re-read when it changes
    tuned_fusion: TunedFusionCache = field(init=False)
    analyzer: Analyzer = field(default_factory=Analyzer)  # caption highlights
    calibration: CalibrationCache = field(init=False)  # relevance per hit

    def __post_init__(self) -> None:
        self.tuned_fusion = TunedFusionCache(fusion_path(self.settings))
        self.calibration = CalibrationCache(self.settings)


async def get_state(request: Request) -> ApiState:
    """Async on purpose: FastAPI runs a plain ``def`` dependency in a worker thread."""
    state: ApiState = request.app.state.api
    return state
