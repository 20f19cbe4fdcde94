"""HTTP request and response models of the search gateway."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from clipsearch.documents import DocId, Label
from clipsearch.highlights import CaptionHighlight
from clipsearch.search import (
    DEFAULT_ALPHA,
    DEFAULT_FUSION,
    DEFAULT_SATURATION,
    MAX_LIMIT,
    MAX_OFFSET,
    Fusion,
    LegScores,
    Mode,
)

QueryText = Annotated[str, Field(max_length=1000)]
# POST /search combines at most this many weighted parts (each may carry a base64 image).
MAX_QUERY_PARTS = 10
FUSION_FIELDS = frozenset({"fusion", "rrf_k", "alpha", "saturation"})


class SearchParams(BaseModel):
    """Fields shared by every search request."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"q": "baseball field near a river", "mode": "hybrid", "limit": 10},
                {"q": "runway", "mode": "lexical", "dataset": ["rsicd"], "category": ["airport"]},
                {"image_id": "rsicd:airport_12.jpg", "mode": "vector", "limit": 20},
            ]
        },
    )

    q: QueryText | None = Field(None, description="Query text (BM25 and/or CLIP text encoder)")
    mode: Mode = Mode.hybrid
    limit: int = Field(10, ge=1, le=MAX_LIMIT)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)
    dataset: list[Label] = Field(default_factory=list, max_length=50)
    category: list[Label] = Field(default_factory=list, max_length=50)
    split: list[Label] = Field(default_factory=list, max_length=50)
    image_id: DocId | None = Field(None, description="An indexed image: 'more like this'")
    exclude_image: bool = Field(False, description="Leave the query image out of the hits")
    fusion: Fusion = Field(
        DEFAULT_FUSION, description="Hybrid fusion (see README 'Search quality'); when no "
        "fusion parameter is given, the dataset's tuned fusion (clipsearch eval --apply) or "
        "the default applies")
    rrf_k: int = Field(60, ge=1, le=10_000)
    alpha: float = Field(DEFAULT_ALPHA, ge=0.0, le=1.0,
                         description="Weight of the vector leg (linear, score)")
    saturation: float = Field(DEFAULT_SATURATION, gt=0.0, le=1000.0,
                              description="score fusion: BM25 s counts as s / (s + saturation)")
    prompt: bool = Field(True, description="Apply the dataset's prompt template (vector leg)")
    min_relevance: float | None = Field(
        None, ge=0.0, le=1.0, description="Leave out hits whose calibrated relevance is "
        "below this (hybrid; 422 when the index has no calibration)")
    collapse: float | None = Field(
        None, gt=0.0, le=1.0, description="Fold near-duplicates: within the top 100 hits, a "
        "hit whose embedding has at least this cosine to a better hit is folded into it "
        "(e.g. 0.97); each hit then says how many it absorbed in `collapsed`")
    facets: bool = Field(False, description="Counts per dataset/category among the top hits")
    steer: str | None = Field(
        None, max_length=200, pattern=r"^[^:\s]+:[^:\s]+$",
        description="<probe>:<scale>, scale in [-2, 2]: move the TEXT query vector along a "
        "trained probe's direction (see `clipsearch probe train`)",
        examples=["textness:1.0"])

    @property
    def fusion_given(self) -> bool:
        """Whether the request set any fusion parameter itself."""
        return bool(self.model_fields_set & FUSION_FIELDS)

    @property
    def text(self) -> str | None:
        """The text of the lexical leg."""
        text = (self.q or "").strip()
        return text or None

    def query_parts(self) -> list[QueryPart]:
        """What the vector leg combines: ``q`` and ``image_id`` are parts of weight 1."""
        parts = []
        if self.image_id:
            parts.append(QueryPart(image_id=self.image_id))
        q = (self.q or "").strip()
        if q:
            parts.append(QueryPart(text=q))
        return parts


class QueryPart(BaseModel):
    """One term of a weighted query: exactly one of text, image_id or image (base64)."""

    model_config = ConfigDict(extra="forbid")

    text: QueryText | None = None
    image_id: DocId | None = None
    image: str | None = Field(None, description="Base64-encoded image file")
    weight: float = Field(1.0, ge=-10.0, le=10.0)

    @model_validator(mode="after")
    def _one_source(self) -> QueryPart:
        given = [x for x in (self.text and self.text.strip(), self.image_id, self.image) if x]
        if len(given) != 1:
            raise ValueError("a query part needs exactly one of text, image_id or image")
        if self.weight == 0:
            raise ValueError("a query part's weight must not be 0")
        return self


class SearchRequest(SearchParams):
    """What ``GET /search`` (query string) and ``POST /search`` (JSON) accept."""

    @model_validator(mode="after")
    def _combination(self) -> SearchRequest:
        text = (self.q or "").strip()
        if self.mode == Mode.lexical and not text:
            raise ValueError("mode 'lexical' needs the query text q")
        if self.mode == Mode.lexical and self.image_id:
            raise ValueError("mode 'lexical' cannot search by image; use vector or hybrid")
        if not text and not self.image_id:
            raise ValueError("give query text q, an image_id, or both")
        return self


class SearchBody(SearchParams):
    """``POST /search``: the query-string fields plus weighted query ``parts``.

    ``parts`` combine into one unit vector for the vector leg (``sum(weight * embedding)``,
    normalised; negative weights push away). Text parts with a positive weight also drive the
    lexical leg, after ``q``.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"q": "baseball field near a river", "mode": "hybrid", "limit": 10},
                {"parts": [{"text": "harbour", "weight": 1.0},
                           {"image_id": "rsicd:port_3.jpg", "weight": 0.5},
                           {"text": "boats", "weight": -0.5}], "mode": "hybrid"},
            ]
        },
    )

    parts: list[QueryPart] = Field(default_factory=list, max_length=MAX_QUERY_PARTS)

    @property
    def text(self) -> str | None:
        words = [(self.q or "").strip()] + [
            p.text.strip() for p in self.parts if p.text and p.weight > 0]
        text = " ".join(w for w in words if w)
        return text[:2000] or None

    def query_parts(self) -> list[QueryPart]:
        return [*super().query_parts(), *self.parts]

    @model_validator(mode="after")
    def _combination(self) -> SearchBody:
        if self.mode == Mode.lexical:
            if not self.text:
                raise ValueError("mode 'lexical' needs query text (q or a positive text part)")
            if self.image_id or any(p.text is None for p in self.parts):
                raise ValueError("mode 'lexical' cannot search by image; use vector or hybrid")
        if not self.query_parts():
            raise ValueError("give query text q, an image_id, or parts")
        return self


class ImageSearchForm(SearchParams):
    """Form fields of ``POST /search/image`` (the image itself is the ``image`` file part)."""

    # The multipart body also carries the file part, which is not a form field.
    model_config = ConfigDict(extra="ignore")

    mode: Mode = Mode.vector

    @model_validator(mode="after")
    def _combination(self) -> ImageSearchForm:
        if self.mode == Mode.lexical:
            raise ValueError("mode 'lexical' cannot search by image; use vector or hybrid")
        if self.image_id:
            raise ValueError("give either an uploaded image or image_id, not both")
        return self


class HitOut(BaseModel):
    id: str
    score: float
    scores: LegScores = Field(description="Each leg's score (None: the leg did not run)")
    captions: list[str]
    dataset: str
    category: str | None = None
    split: str | None = None
    image_url: str
    collapsed: int | None = Field(None, description="Near-duplicates folded into this hit "
                                  "(only with collapse)")
    relevance: float | None = Field(None, description="Calibrated probability that the hit "
                                    "is relevant (hybrid, when the index has a calibration)")
    highlights: list[CaptionHighlight] = Field(
        default_factory=list, description="Caption words matching the query text, analysed "
        "like the index (lower-cased, English-stemmed): [start, end) character offsets")


class Timings(BaseModel):
    encode: float = 0.0
    search: float = 0.0
    total: float = 0.0


class QueryEcho(BaseModel):
    q: str | None = None
    image_id: str | None = None
    dataset: list[str] = Field(default_factory=list)
    category: list[str] = Field(default_factory=list)
    split: list[str] = Field(default_factory=list)
    uploaded_image: bool = False
    vector_text: str | None = Field(None, description="Text the vector leg encoded (prompt)")
    fusion: Fusion | None = None
    rrf_k: int | None = None
    alpha: float | None = None
    saturation: float | None = None
    fusion_source: str | None = Field(
        None, description="request / tuned:<dataset> (clipsearch eval --apply) / default")


class Facets(BaseModel):
    window: int = Field(description="Counts are over this many top hits")
    dataset: dict[str, int] = Field(default_factory=dict)
    category: dict[str, int] = Field(default_factory=dict)


class SearchResponse(BaseModel):
    query: QueryEcho
    mode: Mode
    total: int
    total_approximate: bool = False
    degraded: bool = False
    limit: int
    offset: int
    model: str | None = Field(None, description="Model that embedded the query (vector legs)")
    hits: list[HitOut]
    facets: Facets | None = None
    timings_ms: Timings
    generation: str | None = Field(None, description="Index generation that answered")
    index_model: str | None = Field(
        None, description="Model whose vectors that generation holds (clipsearch generations)")


class DocumentOut(BaseModel):
    id: str
    captions: list[str]
    dataset: str
    category: str | None = None
    split: str | None = None
    model_id: str
    image_url: str


class Health(BaseModel):
    status: str = "ok"


class Readiness(BaseModel):
    status: str
    index: str
    encoder: str
    documents: int | None = None
    generation: str | None = Field(None, description="The index's active generation")
    embedding_space: str | None = Field(
        None, description="ok / unverified / mismatch: the encoder's embedding space against "
        "the active generation's (mismatch: vector and hybrid queries answer 409)")
