"""The binarised profiles inside the loopback Vespa (tests only), from Vespa's documentation
(``binarizing-vectors``, ``phased-ranking``, schema reference ``second-phase``) and the
generator (``clipsearch.index.vespa.binarized``):

* the ``_bits`` field is what ``input <field> | binarize | pack_bits`` writes: computed here
  from the stored float vector (numpy ``packbits`` of ``v > 0``: big-endian, signed int8);
* ``nearestNeighbor(<field>_bits, q_bits)`` is exact: the ``targetHits`` smallest hamming
  distances (bits that differ), ties by id (Vespa's HNSW order among ties is unspecified);
* first phase over every matched hit (hamming is computed for lexical-only hits too, as for
  closeness), second phase over the top ``ranking.rerankCount`` (the float closeness from
  the attribute, exact), hits beyond it re-scored below the worst re-ranked hit in
  first-phase order; then the global phase of ``hybrid`` / ``hybrid-linear`` over the top
  ``ranking.globalPhase.rerankCount`` with ``clipsearch.fusion`` (as ``vespa_engine.rank``).
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from clipsearch.fusion import score_fusion
from clipsearch.index.vespa import schema_names as n
from clipsearch.index.vespa.sd_parser import FieldInfo, SchemaInfo
from tests.vespa_engine import Node, Ranked, global_phase

_POPCOUNT = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1)
_SIZE = re.compile(r"\[(\d+)\]")


def tensor_input_problem(declared: str, value: Any) -> str | None:
    """Why a dense ``input.query(x)`` value does not fit its declared tensor type (size,
    int8 range), or None."""
    size = _SIZE.search(declared)
    if not isinstance(value, list) or (size and len(value) != int(size.group(1))):
        return f"must be {declared}"
    if not all(isinstance(v, int | float) for v in value):
        return f"must be {declared} (numbers)"
    if declared.startswith("tensor<int8>") and not all(
            isinstance(v, int) and -128 <= v <= 127 for v in value):
        return f"must be {declared}: integers in -128..127"
    return None


def hamming_field(schema: SchemaInfo, nn: Node) -> FieldInfo | None:
    """The field of a nearestNeighbor when it ranks by hamming distance (binarised)."""
    f = schema.fields.get(nn.field_name)
    return f if f is not None and f.distance_metric == "hamming" else None


def nn_problem(schema: SchemaInfo, nn: Node, declared: dict[str, str]) -> str | None:
    """A nearestNeighbor on a hamming field needs a query tensor of the field's type."""
    f = hamming_field(schema, nn)
    if f is None:
        return None
    want = f.type.replace(" ", "")
    got = declared.get(f"query({nn.query_tensor})", "").replace(" ", "")
    if got != want:
        return (f"nearestNeighbor({nn.field_name}, {nn.query_tensor}): the query tensor is "
                f"{got or 'undeclared'}, the field {want}")
    return None


def source_field(f: FieldInfo) -> str:
    """``input X | binarize | pack_bits ...`` -> X."""
    return f.indexing[0].split()[1]


def hamming(docs: dict[str, dict[str, Any]], source: str, q_bits: list[int]) -> dict[str, int]:
    if not docs:
        return {}
    keys = list(docs)
    q = np.asarray(q_bits, dtype=np.int8).view(np.uint8)
    # a document without the vector (another generation's) holds an all-zero tensor: no bit set
    rows = [docs[k].get(source) or [0.0] * (8 * len(q)) for k in keys]
    bits = np.packbits(np.array(rows) > 0, axis=1)
    dist = _POPCOUNT[np.bitwise_xor(bits, q)].sum(axis=1)
    return dict(zip(keys, dist.tolist(), strict=True))


def nearest(allowed: list[str], ham: dict[str, int], target_hits: int) -> set[str]:
    return set(sorted(allowed, key=lambda k: (ham[k], k))[:target_hits])


def _base_profile(profile: str) -> str:
    if profile in n.PROFILES:
        return profile
    return next((p for p in sorted(n.PROFILES, key=len, reverse=True)
                 if profile.startswith(p + "-")), profile)


def _below(rest: list[Ranked], window: list[Ranked]) -> None:
    """Hits not re-ranked sort below the worst re-ranked one, in their previous order (with
    nothing re-ranked, e.g. ``ranking.rerankCount: 0``, they keep their scores)."""
    if not window:
        return
    low = min(r.relevance for r in window)
    for i, r in enumerate(rest):
        r.relevance = low - 1.0 - i * 1e-6


def rank(profile: str, candidates: list[str], bm25: dict[str, float], close: dict[str, float],
         ham: dict[str, int], dim: int, *, rerank_count: int, global_rerank: int,
         alpha: float, saturation: float) -> list[Ranked]:
    """Order matched hits as the binarised profile does (first, second, global phase)."""
    base = _base_profile(profile)
    rows = [Ranked(k, 0.0, bm25.get(k, 0.0), close.get(k, 0.0)) for k in candidates]

    def sat(r: Ranked, s: float) -> float:
        return r.lexical / (r.lexical + s)

    def estimate(k: str) -> float:
        return 1.0 / (2.0 - math.cos(math.pi * ham[k] / dim))

    def first(r: Ranked) -> float:
        if base == n.PROFILE_VECTOR:
            return 1.0 / (1.0 + ham[r.key])
        if base == n.PROFILE_HYBRID_SCORE:
            return alpha * estimate(r.key) + (1 - alpha) * sat(r, saturation)
        return estimate(r.key) + sat(r, 10.0)

    def second(r: Ranked) -> float:
        if base == n.PROFILE_VECTOR:
            return r.vector
        if base == n.PROFILE_HYBRID_SCORE:
            return float(score_fusion(np.array([r.lexical]), np.array([r.vector]),
                                      alpha, saturation)[0])
        return r.vector + sat(r, 10.0)

    for r in rows:
        r.relevance = first(r)
    rows.sort(key=lambda r: (-r.relevance, r.key))
    window, rest = rows[:rerank_count], rows[rerank_count:]
    for r in window:
        r.relevance = second(r)
    window.sort(key=lambda r: (-r.relevance, r.key))
    _below(rest, window)
    rows = window + rest
    if base in (n.PROFILE_HYBRID, n.PROFILE_HYBRID_LINEAR):
        top, rest = rows[:global_rerank], rows[global_rerank:]
        global_phase(top, base, alpha)
        _below(rest, top)
        rows = top + rest
    rows.sort(key=lambda r: (-r.relevance, r.key))
    return rows
