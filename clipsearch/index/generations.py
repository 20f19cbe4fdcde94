"""Index generations: several embedding spaces side by side, one of them active.

A generation is the set of vectors of one model (one embedding space, one dimension) for the
index's documents. Searches and writes go to the active generation unless told otherwise;
``clipsearch reindex`` builds a new one beside it, ``activate`` switches atomically,
``drop`` deletes an inactive one. This module holds the engine-independent parts: the
records, the errors and the space check. Engines: ``clipsearch.index.embedded_generations``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from clipsearch.errors import Conflict, InvalidRequest, NotFound
from clipsearch.models.identity import short_space

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
LEGACY_NAME = "g0"


class GenerationState(StrEnum):
    building = "building"
    complete = "complete"


class Generation(BaseModel):
    """One generation as stored in the registry (``documents``/``active`` filled on listing)."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(pattern=NAME_PATTERN)
    table: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,95}$")
    dim: int = Field(ge=2, le=4096)
    model_id: str | None = None
    space: str | None = Field(None, description="embedding space id (None: not recorded)")
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))
    state: GenerationState = GenerationState.complete
    expected: int | None = Field(None, description="documents a building generation awaits")
    source: str | None = Field(None, description="the generation it was re-indexed from")
    documents: int | None = None
    active: bool = False

    def progress(self) -> str:
        done = self.documents if self.documents is not None else "?"
        if self.expected:
            share = f" ({100 * (self.documents or 0) / self.expected:.0f}%)"
            return f"{done} of {self.expected} documents{share}"
        return f"{done} documents"

    def describe(self) -> str:
        return (f"generation {self.name!r} (model {self.model_id or 'unknown'}, space "
                f"{short_space(self.space)}, {self.dim}-d)")


class Catalog(BaseModel):
    """The registry file: every generation and the name of the active one."""

    model_config = ConfigDict(extra="ignore")

    version: int = 1
    active: str
    generations: list[Generation]

    def get(self, name: str) -> Generation:
        for gen in self.generations:
            if gen.name == name:
                return gen
        known = ", ".join(g.name for g in self.generations)
        raise UnknownGeneration(f"no generation {name!r} (known: {known})")

    def active_generation(self) -> Generation:
        return self.get(self.active)

    def next_name(self) -> str:
        taken = {g.name for g in self.generations}
        n = len(self.generations)
        while f"g{n}" in taken:
            n += 1
        return f"g{n}"

    # catalog updates, shared by the engines (each applies them under its own write rule)
    def set_expected(self, name: str, expected: int) -> None:
        self.get(name).expected = expected

    def mark_complete(self, name: str) -> Generation:
        gen = self.get(name)
        gen.state = GenerationState.complete
        return gen

    def make_active(self, name: str) -> None:
        self.get(name)
        self.active = name


class UnknownGeneration(NotFound):
    reason = "unknown_generation"


class GenerationNotReady(Conflict):
    reason = "generation_not_ready"


class GenerationInUse(Conflict):
    reason = "generation_active"


class EmbeddingSpaceMismatch(Conflict):
    reason = "embedding_space_mismatch"


class DimensionChange(InvalidRequest):
    reason = "vector_dimension"


def space_mismatch(gen: Generation, *, model_id: str | None, space: str | None,
                   doing: str) -> EmbeddingSpaceMismatch:
    """The error for vectors of ``space`` (from ``model_id``) meeting generation ``gen``."""
    return EmbeddingSpaceMismatch(
        f"{doing}: the encoder (model {model_id or 'unknown'}, space {short_space(space)}) "
        f"embeds into another space than the index's active {gen.describe()}; its vectors "
        "cannot be compared. Serve the generation's model (CLIPSEARCH_MODEL="
        f"{gen.model_id or '...'}), or build a generation for the new model "
        "(`clipsearch reindex --model NEW`) and `clipsearch activate` it. Lexical search and "
        "image_id queries keep working.")


def require_complete(gen: Generation) -> None:
    """Only a complete generation may be activated (with how far a building one got)."""
    if gen.state != GenerationState.complete:
        raise GenerationNotReady(
            f"generation {gen.name!r} is still being built ({gen.progress()}); finish it "
            "with `clipsearch reindex` (it resumes) before activating it")


def check_space(gen: Generation, *, model_id: str | None, space: str | None,
                doing: str) -> None:
    """Raise ``EmbeddingSpaceMismatch`` when both spaces are known and differ."""
    if gen.space and space and gen.space != space:
        raise space_mismatch(gen, model_id=model_id, space=space, doing=doing)


async def check_claim(gen: Generation, *, model_id: str, space: str | None, dim: int,
                      stored_models: Callable[[], Awaitable[set[str]]]) -> bool:
    """Before writing vectors of ``space`` (``dim``-d, from ``model_id``) into ``gen``:
    refuse another dimension or a known other space (nothing written yet). True when
    ``gen`` records no space yet and should record this one: it is empty, or what it holds
    came from the same model id before spaces were recorded (``stored_models``: the model
    ids of some of its documents, read only then)."""
    if dim != gen.dim:
        raise DimensionChange(
            f"the model makes {dim}-d vectors but {gen.describe()} holds {gen.dim}-d "
            "ones; a new dimension needs its own generation (`clipsearch reindex`)")
    check_space(gen, model_id=model_id, space=space, doing="refusing to write")
    if gen.space or not space:
        return False
    stored = await stored_models() if gen.documents else set()
    if stored - {model_id}:
        raise space_mismatch(gen.model_copy(update={"model_id": ", ".join(sorted(stored))}),
                             model_id=model_id, space=space, doing="refusing to write")
    return True


def record_space(name: str, *, model_id: str, space: str | None) -> Callable[[Catalog],
                                                                            Generation]:
    """A catalog update that records ``space`` and ``model_id`` on generation ``name``."""

    def record(catalog: Catalog) -> Generation:
        g = catalog.get(name)
        g.space, g.model_id = space, model_id
        return g

    return record
