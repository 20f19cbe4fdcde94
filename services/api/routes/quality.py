"""``GET /fusion``: the hybrid fusion the API applies per dataset, and where it came from."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from clipsearch.quality.tuned import TunedFusion
from clipsearch.search import HybridParameters
from services.api.state import ApiState, get_state

router = APIRouter(tags=["quality"])


class FusionInfo(BaseModel):
    default: HybridParameters = Field(description="Used when nothing below applies")
    tuned: dict[str, TunedFusion] = Field(
        default_factory=dict, description="Per dataset ('*': every request without a single "
        "dataset filter), from `clipsearch eval --sweep --apply`")
    error: str | None = Field(None, description="Why the tuned-fusion file was not used")


@router.get("/fusion", response_model=FusionInfo, summary="Fusion defaults per dataset")
async def fusion_info(state: ApiState = Depends(get_state)) -> FusionInfo:
    tuned = state.tuned_fusion.get()
    return FusionInfo(default=HybridParameters(), tuned=tuned.datasets,
                      error=state.tuned_fusion.error)
