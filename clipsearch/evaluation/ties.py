"""Neutral tie-breaking for evaluation runs.

An engine orders equal scores by document id (its contract: results are deterministic). Ids
often start with the category ("airport_0003"), so a run cut at depth k keeps the ties whose
ids sort first, and that order leaks the label into the metric (category queries at depth 50
looked perfect on some categories through id order alone). The evaluation therefore reorders
every group of equal scores by a seeded hash of (seed, query id, document id): a shuffle that
is random with respect to the labels, the same for every mode and every run with one seed.
(trec_eval orders ties by document name instead, which is what leaks here.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

DEFAULT_SEED = 0
TIE_BREAKING = "seeded shuffle of equal scores (blake2b of seed, query id, document id)"


def tie_key(seed: int, query_id: str, doc_id: str) -> bytes:
    return hashlib.blake2b(f"{seed}\x00{query_id}\x00{doc_id}".encode(), digest_size=8).digest()


def neutral_order(hits: Sequence[tuple[str, float]], query_id: str,
                  seed: int = DEFAULT_SEED) -> list[str]:
    """Ids by score descending, equal scores in seeded-hash order (input order ignored)."""
    ranked = sorted(hits, key=lambda h: (-h[1], tie_key(seed, query_id, h[0])))
    return [doc for doc, _ in ranked]


def boundary_tied(scores: Sequence[float], depth: int) -> bool:
    """Whether the hit at ``depth`` (1-based) ties with the last one fetched, i.e. more of its
    tie group may lie beyond what was fetched."""
    return len(scores) >= depth and len(scores) > 0 and scores[depth - 1] == scores[-1]
