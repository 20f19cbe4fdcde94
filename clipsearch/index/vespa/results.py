"""Vespa's query result JSON (``root.children``, ``coverage``, ``errors``) as typed models,
and its translation into ``SearchResult``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from clipsearch.errors import BackendError, BackendUnavailable, InvalidRequest
from clipsearch.index.vespa import schema_names as n
from clipsearch.index.vespa.docs import document_fields
from clipsearch.search import Hit, LegScores

# Vespa error codes (com.yahoo.container.protect.Error) that mean "try again later"
_UNAVAILABLE_CODES = {8, 10, 12}  # no backends in service, backend communication, timeout
_BAD_REQUEST_CODES = {3, 4}  # illegal query, invalid query parameter


class VespaError(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: int = 0
    summary: str = ""
    message: str = ""


class Degraded(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    match_phase: bool = Field(False, alias="match-phase")
    timeout: bool = False
    adaptive_timeout: bool = Field(False, alias="adaptive-timeout")
    non_ideal_state: bool = Field(False, alias="non-ideal-state")


class Coverage(BaseModel):
    model_config = ConfigDict(extra="allow")
    coverage: float = 100.0
    documents: int = 0
    full: bool = True
    degraded: Degraded | None = None


class Child(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = ""
    relevance: float = 0.0
    fields: dict[str, Any] = Field(default_factory=dict)


class RootFields(BaseModel):
    model_config = ConfigDict(extra="allow")
    total_count: int = Field(0, alias="totalCount")


class Root(BaseModel):
    model_config = ConfigDict(extra="allow")
    fields: RootFields = Field(default_factory=lambda: RootFields(totalCount=0))
    coverage: Coverage | None = None
    errors: list[VespaError] = Field(default_factory=list)
    children: list[Child] = Field(default_factory=list)


class QueryResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    root: Root

    @property
    def degraded(self) -> bool:
        cov = self.root.coverage
        if cov is None:
            return False
        return (not cov.full) or cov.coverage < 100.0 or (
            cov.degraded is not None and any(cov.degraded.model_dump().values()))


def raise_for_errors(resp: QueryResponse, status: int) -> None:
    """Turn ``root.errors`` into our error classes. Errors with hits (a soft timeout that
    still returned some results) are not raised: the result is flagged degraded instead."""
    errors = resp.root.errors
    if not errors or (resp.root.children and status == 200):
        return
    text = "; ".join(f"{e.summary or 'error'} (code {e.code}): {e.message}".strip() for e in errors)
    codes = {e.code for e in errors}
    if codes & _BAD_REQUEST_CODES or status == 400:
        raise InvalidRequest(f"Vespa rejected the query: {text}", reason="invalid_query")
    if codes & _UNAVAILABLE_CODES or status in (503, 504):
        raise BackendUnavailable(f"Vespa could not answer in time: {text}")
    raise BackendError(f"Vespa query failed: {text}")


@dataclass(frozen=True)
class Legs:
    """Which legs a query ran: a leg that did not run is reported as ``None``."""

    lexical: bool
    vector: bool


def leg_scores(features: dict[str, Any], legs: Legs) -> LegScores:
    lex = features.get(n.FN_LEXICAL, 0.0)
    vec = features.get(n.FN_VECTOR, 0.0)
    return LegScores(lexical=float(lex) if legs.lexical else None,
                     vector=float(vec) if legs.vector else None)


def to_hit(child: Child, legs: Legs) -> Hit:
    doc = document_fields(child.fields)
    return Hit(id=doc.id, score=float(child.relevance),
               scores=leg_scores(child.fields.get("matchfeatures") or {}, legs), document=doc)
