"""The gateway's view of index generations: one generation per request, spaces checked.

* ``pin``: the active generation is resolved ONCE per request and every read of that request
  (the ``image_id`` lookup, the search, the facets) goes to it, so an ``activate`` while
  requests run never mixes two generations in one answer.
* ``check_query_space``: a query the encoder must embed (text, uploaded or inline image) in
  vector or hybrid mode is refused with 409 ``embedding_space_mismatch`` when the encoder's
  space differs from the generation's. Lexical queries and ``image_id`` "more like this"
  (stored vectors, same space by construction) keep working.
* ``space_status``: the same comparison for ``/ready``.
"""

from __future__ import annotations

from dataclasses import dataclass

from clipsearch.embedder import Embedder
from clipsearch.errors import ClipsearchError
from clipsearch.index.base import GenerationalIndex, SearchIndex
from clipsearch.index.generations import Generation, check_space
from clipsearch.models.identity import short_space, space_of
from clipsearch.search import Mode
from services.api.schemas import SearchParams


@dataclass(frozen=True)
class Pinned:
    index: SearchIndex
    generation: Generation | None  # None: the engine has no generations


async def pin(index: SearchIndex) -> Pinned:
    if isinstance(index, GenerationalIndex):
        gen = await index.active_generation()
        return Pinned(index.at_generation(gen.name), gen)
    return Pinned(index, None)


def _model_of(embedder: Embedder) -> str | None:
    try:
        return embedder.model_id
    except ClipsearchError:  # a remote encoder not connected yet
        return None


def needs_encoder(req: SearchParams, upload: bytes | None) -> bool:
    if req.mode not in (Mode.vector, Mode.hybrid):
        return False
    return upload is not None or any(p.text or p.image for p in req.query_parts())


def check_query_space(pinned: Pinned, embedder: Embedder | None, req: SearchParams,
                      upload: bytes | None) -> None:
    if pinned.generation is None or embedder is None or not needs_encoder(req, upload):
        return
    check_space(pinned.generation, model_id=_model_of(embedder), space=space_of(embedder),
                doing=f"{req.mode.value} search refused")


def space_status(gen: Generation | None, embedder: Embedder | None) -> str:
    """``ok``, ``unverified: ...`` (a side does not say) or ``mismatch: <message>``."""
    if gen is None:
        return "unverified: the index engine has no generations"
    space = space_of(embedder) if embedder is not None else None
    if not gen.space or not space:
        side = "the encoder" if gen.space else f"generation {gen.name!r}"
        return f"unverified: {side} does not record an embedding space"
    try:
        check_space(gen, model_id=_model_of(embedder) if embedder else None, space=space,
                    doing="vector and hybrid search are refused")
    except ClipsearchError as exc:
        return f"mismatch: {exc.message}"
    return f"ok: {short_space(space)}"
