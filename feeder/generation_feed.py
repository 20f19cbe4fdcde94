"""The feeder and index generations: which generation a feed writes, and the space check.

Every feed of a dataset calls ``claim_for_feed`` before its first write: vectors of another
embedding space (or dimension) than the target generation's are refused with a clear error
and nothing is written (``clipsearch.index.generations``).
"""

from __future__ import annotations

from clipsearch.index.base import GenerationalIndex, SearchIndex
from clipsearch.index.generations import Generation
from clipsearch.models.identity import space_of


async def claim_for_feed(index: SearchIndex, encoder: object, *, model_id: str,
                         dim: int) -> Generation | None:
    """Check (and record) the encoder's space on the active generation of ``index``; an index
    without generations (or one generation's own view) is left alone: ``reindex`` claims its
    generation itself before feeding it."""
    if not isinstance(index, GenerationalIndex):
        return None
    gen = await index.active_generation()
    return await index.claim_space(gen.name, model_id=model_id, space=space_of(encoder),
                                   dim=dim)
