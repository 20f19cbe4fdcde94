"""Request and response models of ``POST /locate`` (find a feature inside an image)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from clipsearch.documents import DocId
from clipsearch.models.patches import DEFAULT_SCALES, MAX_SCALE

Scale = int


class LocateOptions(BaseModel):
    """What to look for and how: shared by the JSON body and the multipart form."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(..., min_length=1, max_length=1000,
                      description="What to find, e.g. 'runway'")
    scales: list[Scale] = Field(
        default_factory=lambda: list(DEFAULT_SCALES), min_length=1, max_length=4,
        description=f"Window sizes as divisors of the image's short side (1..{MAX_SCALE}); "
        "each scale's windows overlap by half")
    temperature: float = Field(100.0, gt=0, le=1000,
                               description="Softmax temperature over cosines (CLIP uses 100)")
    heatmap: bool = Field(False, description="Add a PNG of the heatmap overlaid on the image "
                          "(base64 data URL in heatmap_png)")
    prompt: bool = Field(False, description="Wrap the text in the dataset's prompt template")

    @model_validator(mode="after")
    def _clean(self) -> LocateOptions:
        if not self.text.strip():
            raise ValueError("text is blank")
        if any(not 1 <= s <= MAX_SCALE for s in self.scales):
            raise ValueError(f"scales must be in [1, {MAX_SCALE}]")
        if len(set(self.scales)) != len(self.scales):
            raise ValueError("scales must be distinct")
        return self


class LocateRequest(LocateOptions):
    """JSON body: an indexed image by id, or an image as base64 (or a data URL)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [
            {"image_id": "airport_0001", "text": "runway", "scales": [2, 3, 4]},
            {"image_id": "airport_0001", "text": "planes", "heatmap": True},
        ]},
    )

    image_id: DocId | None = Field(None, description="An indexed image")
    image: str | None = Field(None, max_length=40_000_000,
                              description="An image as base64 (or a data: URL)")

    @model_validator(mode="after")
    def _one_image(self) -> LocateRequest:
        if (self.image_id is None) == (self.image is None):
            raise ValueError("give exactly one of image_id and image")
        return self


class Box(BaseModel):
    """A window in pixel coordinates of the original image (x1, y1 exclusive)."""

    x0: int
    y0: int
    x1: int
    y1: int
    scale: int
    row: int
    col: int
    cosine: float
    softmax: float


class ScaleScores(BaseModel):
    """One scale's grid: window ``i, j`` has its top-left corner at ``(xs[j], ys[i])``."""

    scale: int
    window: int = Field(description="Window side in pixels")
    stride: int
    rows: int
    cols: int
    xs: list[int]
    ys: list[int]
    cosine: list[list[float]] = Field(description="Raw cosine per window, rows x cols")
    softmax: list[list[float]] = Field(description="Softmax over this scale's windows")
    best: Box


class LocateTimings(BaseModel):
    decode: float
    encode: float
    score: float
    total: float


class LocateResponse(BaseModel):
    image_id: str | None
    text: str
    encoded_text: str = Field(description="The text the encoder saw (after the prompt)")
    model: str
    width: int
    height: int
    patches: int
    temperature: float
    best: Box = Field(description="The window with the highest cosine over all scales")
    scales: list[ScaleScores]
    heatmap_png: str | None = Field(None, description="data:image/png;base64,... when asked")
    timings_ms: LocateTimings
