"""Search plans and results: what the gateway asks an index and what it gets back."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from clipsearch.documents import DocId, DocumentFields, Label

MAX_LIMIT = 100
MAX_OFFSET = 1000


class Mode(StrEnum):
    lexical = "lexical"
    vector = "vector"
    hybrid = "hybrid"


class Fusion(StrEnum):
    """See ``clipsearch.fusion`` for the formulas."""

    rrf = "rrf"  # window RRF: every hit of the fusion window is ranked in both legs
    rrf_textbook = "rrf_textbook"  # RRF over the legs that retrieved the hit only
    linear = "linear"  # min-max normalised legs over the window, weighted by alpha
    score = "score"  # alpha * closeness + (1 - alpha) * bm25 / (bm25 + saturation)


DEFAULT_FUSION = Fusion.score
DEFAULT_ALPHA = 0.7
DEFAULT_SATURATION = 3.0


class HybridParameters(BaseModel):
    """How the lexical and vector legs are fused (the Vespa ``hybrid`` profiles do the same).

    * ``rrf``: sum over legs of ``1 / (rrf_k + rank)``, ranks taken inside the fusion window.
    * ``rrf_textbook``: the same sum over the legs that retrieved the hit only.
    * ``linear``: ``alpha * norm(vector) + (1 - alpha) * norm(lexical)``, each leg min-max
      normalised over the window.
    * ``score`` (default): ``alpha * closeness + (1 - alpha) * bm25 / (bm25 + saturation)``.
    """

    model_config = ConfigDict(extra="forbid")

    fusion: Fusion = DEFAULT_FUSION
    rrf_k: int = Field(60, ge=1, le=10_000)
    alpha: float = Field(DEFAULT_ALPHA, ge=0.0, le=1.0,
                         description="Weight of the vector leg (linear, score)")
    saturation: float = Field(DEFAULT_SATURATION, gt=0.0, le=1000.0,
                              description="score fusion: BM25 s counts as s / (s + saturation)")


class Filters(BaseModel):
    """Exact-match filters; several values of one field are OR-ed, fields are AND-ed."""

    model_config = ConfigDict(extra="forbid")

    dataset: list[Label] = Field(default_factory=list, max_length=50)
    category: list[Label] = Field(default_factory=list, max_length=50)
    split: list[Label] = Field(default_factory=list, max_length=50)

    def is_empty(self) -> bool:
        return not (self.dataset or self.category or self.split)

    def items(self) -> list[tuple[str, list[str]]]:
        return [(k, v) for k, v in (("dataset", self.dataset), ("category", self.category),
                                    ("split", self.split)) if v]


class SearchPlan(BaseModel):
    """A fully resolved query: text for the lexical leg, a unit vector for the vector leg."""

    model_config = ConfigDict(extra="forbid")

    mode: Mode
    text: str | None = Field(None, max_length=2000)
    vector: list[float] | None = None
    limit: int = Field(10, ge=1, le=MAX_LIMIT)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)
    filters: Filters = Field(default_factory=Filters)
    hybrid: HybridParameters = Field(default_factory=HybridParameters)
    candidates: int = Field(100, ge=1, le=5000, description="Per-leg candidates before fusion")
    exclude_ids: list[DocId] = Field(default_factory=list, max_length=100)

    @model_validator(mode="after")
    def _legs_present(self) -> SearchPlan:
        has_text = bool(self.text and self.text.strip())
        if self.mode in (Mode.lexical, Mode.hybrid) and not has_text and self.vector is None:
            raise ValueError(f"mode {self.mode.value!r} needs query text")
        if self.mode == Mode.lexical and not has_text:
            raise ValueError("lexical mode needs query text")
        if self.mode in (Mode.vector, Mode.hybrid) and self.vector is None:
            raise ValueError(f"mode {self.mode.value!r} needs a query vector")
        return self

    @property
    def window(self) -> int:
        """How many candidates each leg must return so that offset + limit can be served."""
        return max(self.candidates, self.offset + self.limit)


class LegScores(BaseModel):
    lexical: float | None = None
    vector: float | None = None


class Hit(BaseModel):
    id: DocId
    score: float
    scores: LegScores
    document: DocumentFields
    collapsed: int | None = Field(
        None, description="Near-duplicates folded into this hit (only with collapse)")
    relevance: float | None = Field(
        None, description="Calibrated P(relevant) (hybrid, when the index has a calibration)")


class SearchResult(BaseModel):
    hits: list[Hit]
    total: int = Field(description="Matching documents (approximate when total_approximate)")
    total_approximate: bool = False
    degraded: bool = Field(False, description="Not every content node answered in time")
