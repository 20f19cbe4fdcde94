"""Binarised vectors in Vespa (issue 17 item 9): an ``int8`` HNSW field of packed sign bits for
the first phase, the full vector re-ranked in the second phase.

Vespa's binarization pattern (vespa-engine/documentation ``binarizing-vectors``, indexing
language ``binarize`` / ``pack_bits``, ``attributes`` "paged attributes"):

* ``<field>_bits`` is a synthetic field (outside the ``document`` block) of type
  ``tensor<int8>(x[dim/8])``, filled at indexing time by
  ``input <field> | binarize | pack_bits | attribute | index``: every cell > 0 becomes a 1
  bit, eight bits per ``int8`` cell, big-endian (cell ``[1, 0, 0, 0, 0, 0, 0, 0]`` -> -128).
  Feeding is unchanged: documents carry the float vector only (the field is not a document
  field, so a put that names it is refused). HNSW with ``distance-metric: hamming`` (bits
  that differ, ``closeness = 1 / (1 + hamming)``), same HNSW settings as the float field.
* ``<field>`` keeps the full vector (``float`` or ``bfloat16`` cells) as an attribute WITHOUT
  an HNSW index, ``paged`` by default: the docs strongly discourage ``paged`` with HNSW and
  in the first phase (every retrieved hit would touch disk); here it is read only for the
  ``rerank-count`` hits of the second phase and for the returned hits' match-features. Not
  paged, it stays in memory and binarisation saves nothing (the bits come on top).
* Queries send both ``query(q_bits)`` (``tensor<int8>(x[dim/8])``, the query vector
  binarised the same way, for ``{targetHits:K}nearestNeighbor(<field>_bits, q_bits)``) and
  ``query(q)`` (float, for the re-rank). The client asks for ``K = max(window,
  candidates)`` hamming candidates and re-ranks them all (``ranking.rerankCount``).

Profiles (same names as the float ones, plus the generation's suffix):

* ``vector``: first phase ``closeness(field, <field>_bits)``; second phase
  ``vector_score`` = the float closeness ``1 / (2 - q . v)`` (what ``closeness`` gives for
  ``prenormalized-angular``: distance ``1 - q . v``), so scores equal the float profile's.
  ``closeness(field, <field>)`` cannot be used: it is 0 without a nearestNeighbor on that
  field, and the float field has no HNSW index here.
* ``hybrid`` / ``hybrid-linear`` / ``hybrid-score``: the float profiles' first phase with the
  vector leg ESTIMATED from the hamming distance, ``1 / (2 - cos(pi * hamming / dim))`` (the
  angle between two vectors from the fraction of sign bits that differ, the sign-random-
  projection estimate), so the two legs mix on the same scale as in the float profiles (raw
  hamming closeness is ~0.01 and bm25 would decide the window alone); the second phase is the
  float profiles' first phase with the exact float ``vector_score``; the global phase is the
  float profiles' global phase. Hits outside the second-phase window keep first-phase scores
  re-scored below the worst re-ranked hit (schema reference, ``second-phase``).
* ``lexical``: as in float; ``vector_score`` is ``closeness(field, <field>_bits)``, 0 without a
  nearestNeighbor (the client reports no vector leg for lexical queries).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field
from vespa.package import (
    HNSW,
    FirstPhaseRanking,
    Function,
    GlobalPhaseRanking,
    RankProfile,
    SecondPhaseRanking,
)
from vespa.package import Field as VespaField

from clipsearch.index.vespa import schema_names as n
from clipsearch.search import DEFAULT_ALPHA, DEFAULT_SATURATION

VECTOR_INDEXES = ("float", "binarized")  # CLIPSEARCH_VESPA_VECTOR_INDEX
DEFAULT_VECTOR_INDEX = "float"
# hamming candidates re-ranked by the float vectors (targetHits and second-phase rerank-count,
# per content node): bench/vector_cells.py, recall@10 against exact float (README, Vespa
# section): 800 gives 0.99 on 50k clustered vectors and on 8k demo-CLIP text->image queries
# (400: 0.88 / 0.85), 0.74 on 200k (1,600: 0.90): raise it with the documents per node
DEFAULT_CANDIDATES = 800
BITS_SUFFIX = "_bits"
Q_BITS = "q_bits"
INPUT_Q_BITS = f"query({Q_BITS})"
FN_VECTOR_ESTIMATE = "vector_estimate"
HNSW_MAX_LINKS = 16  # the float field's HNSW settings, replicated (docs: binarizing-vectors)
HNSW_EXPLORE_AT_INSERT = 200
GLOBAL_RERANK_COUNT = 200  # as the float profiles (the client raises it per query)
_DENSE = re.compile(r"tensor<(\w+)>\(x\[(\d+)\]\)")


class BinarizedOptions(BaseModel):
    """How the generator writes a binarised vector field and its profiles."""

    candidates: int = Field(DEFAULT_CANDIDATES, ge=10, le=10_000, description=(
        "second-phase rerank-count compiled into the profiles (the client sends "
        "ranking.rerankCount per query)"))
    paged: bool = Field(True, description="page the full vector out of memory (attribute: "
                        "paged); it is read only in the second phase")


def bits_field(field: str) -> str:
    """The binarised companion of a tensor field: ``embedding`` -> ``embedding_bits``."""
    return f"{field}{BITS_SUFFIX}"


def bits_dim(dim: int) -> int:
    """``int8`` cells of the packed field: one per eight dimensions."""
    if dim <= 0 or dim % 8:
        raise ValueError(f"a binarised vector needs a dimension divisible by 8, not {dim}")
    return dim // 8


def bits_type(dim: int) -> str:
    return f"tensor<int8>(x[{bits_dim(dim)}])"


def pack_bits(vector: Sequence[float] | np.ndarray) -> list[int]:
    """``binarize | pack_bits`` in numpy: 1 for a value > 0, eight per byte, big-endian,
    read as signed ``int8`` (Vespa's indexing converters, threshold 0)."""
    bits = np.asarray(vector, dtype=np.float64) > 0
    bits_dim(bits.shape[-1])
    return [int(v) for v in np.packbits(bits, axis=-1).view(np.int8).tolist()]


def float_closeness(field: str) -> str:
    """``closeness`` of ``prenormalized-angular`` computed from the attribute (no HNSW needed):
    ``1 / (1 + distance)`` with ``distance = 1 - q . v``."""
    return f"1 / (2 - sum({n.INPUT_Q} * attribute({field})))"


def estimated_closeness(field: str, dim: int) -> str:
    """The float closeness estimated from the hamming distance of the sign bits: the angle
    is ``pi * hamming / dim``."""
    return f"1 / (2 - cos({math.pi:.9f} * distance(field, {bits_field(field)}) / {dim}))"


def binarized_fields(field: str, dim: int, *, cell_type: str = "float",
                     options: BinarizedOptions | None = None) -> tuple[VespaField, VespaField]:
    """(the full-vector document field, its synthetic ``_bits`` field). The second is
    outside the ``document`` block: add it with ``Schema.add_fields``."""
    opts = options or BinarizedOptions()
    full = VespaField(
        field, f"tensor<{cell_type}>(x[{dim}])", indexing=["attribute"],
        attribute=["distance-metric: prenormalized-angular", *(["paged"] if opts.paged else [])])
    bits = VespaField(
        bits_field(field), bits_type(dim),
        indexing=[f"input {field}", "binarize", "pack_bits", "attribute", "index"],
        ann=HNSW(distance_metric="hamming", max_links_per_node=HNSW_MAX_LINKS,
                 neighbors_to_explore_at_insert=HNSW_EXPLORE_AT_INSERT),
        is_document_field=False)
    return full, bits


def binarize_fields(fields: Sequence[VespaField], options: BinarizedOptions | None = None,
                    ) -> tuple[list[VespaField], list[VespaField]]:
    """(document fields, synthetic fields): every dense tensor field with an HNSW index
    (``embedding``, a generation's ``embedding_<G>``) becomes its full-vector re-rank field,
    and gets a ``_bits`` companion."""
    out: list[VespaField] = []
    synthetic: list[VespaField] = []
    for f in fields:
        m = _DENSE.fullmatch(f.type.replace(" ", ""))
        if f.ann is None or m is None:
            out.append(f)
            continue
        full, bits = binarized_fields(f.name, int(m.group(2)), cell_type=m.group(1),
                                      options=options)
        out.append(full)
        synthetic.append(bits)
    return out, synthetic


def _hybrid_first(vector: str) -> str:
    return f"{vector} + {n.FN_LEXICAL} / ({n.FN_LEXICAL} + 10)"


def _score_first(vector: str) -> str:
    return (f"{n.INPUT_ALPHA} * {vector} + (1 - {n.INPUT_ALPHA}) * {n.FN_LEXICAL} / "
            f"({n.FN_LEXICAL} + {n.INPUT_SATURATION})")


GLOBAL_RRF = (f"reciprocal_rank({n.FN_LEXICAL}, {n.RRF_K}) + "
              f"reciprocal_rank({n.FN_VECTOR}, {n.RRF_K})")
GLOBAL_LINEAR = (f"{n.INPUT_ALPHA} * normalize_linear({n.FN_VECTOR}) + "
                 f"(1 - {n.INPUT_ALPHA}) * normalize_linear({n.FN_LEXICAL})")


def binarized_inputs(dim: int) -> list[tuple[str, str, str] | tuple[str, str]]:
    return [(n.INPUT_Q, f"tensor<float>(x[{dim}])"), (INPUT_Q_BITS, bits_type(dim)),
            (n.INPUT_ALPHA, "double", str(DEFAULT_ALPHA)),
            (n.INPUT_SATURATION, "double", str(DEFAULT_SATURATION))]


def binarized_profiles(field: str, dim: int, *, options: BinarizedOptions | None = None,
                       suffix: str = "") -> list[RankProfile]:
    """The API's profiles (named ``<profile><suffix>``) over ``field`` binarised."""
    opts = options or BinarizedOptions()
    bits = bits_field(field)

    def profile(name: str, first: str, second: str | None = None,
                global_phase: str | None = None, *, lexical_only: bool = False) -> RankProfile:
        vector = f"closeness(field, {bits})" if lexical_only else float_closeness(field)
        functions = [Function(n.FN_LEXICAL, f"bm25({n.F_CAPTION})"),
                     Function(n.FN_VECTOR, vector)]
        if not lexical_only:
            functions.append(Function(FN_VECTOR_ESTIMATE, estimated_closeness(field, dim)))
        return RankProfile(
            f"{name}{suffix}",
            inputs=binarized_inputs(dim),
            functions=functions,
            first_phase=FirstPhaseRanking(first),
            second_phase=(SecondPhaseRanking(second, rerank_count=opts.candidates)
                          if second else None),
            global_phase=(GlobalPhaseRanking(global_phase, rerank_count=GLOBAL_RERANK_COUNT)
                          if global_phase else None),
            match_features=[n.FN_LEXICAL, n.FN_VECTOR],
        )

    est = FN_VECTOR_ESTIMATE
    return [
        profile(n.PROFILE_LEXICAL, n.FN_LEXICAL, lexical_only=True),
        profile(n.PROFILE_VECTOR, f"closeness(field, {bits})", n.FN_VECTOR),
        profile(n.PROFILE_HYBRID, _hybrid_first(est), _hybrid_first(n.FN_VECTOR), GLOBAL_RRF),
        profile(n.PROFILE_HYBRID_LINEAR, _hybrid_first(est), _hybrid_first(n.FN_VECTOR),
                GLOBAL_LINEAR),
        profile(n.PROFILE_HYBRID_SCORE, _score_first(est), _score_first(n.FN_VECTOR)),
    ]


# ---------------------------------------------------------------------------- queries
class BinarizedQuery(BaseModel):
    """What the client adds to a query on a binarised field (``query.search_body``)."""

    candidates: int = Field(DEFAULT_CANDIDATES, ge=1, le=10_000)

    def target_hits(self, window: int) -> int:
        """Hamming candidates: never fewer than the fusion window the float field gets."""
        return max(int(window), self.candidates)

    def rerank_count(self, window: int, hybrid: bool) -> int:
        """Second-phase re-rank: every hamming candidate, plus (hybrid) a window of lexical
        matches, which compete for the same per-node second-phase window."""
        return self.target_hits(window) + (int(window) if hybrid else 0)

    @staticmethod
    def inputs(vector: Sequence[float]) -> dict[str, list[int]]:
        return {f"input.{INPUT_Q_BITS}": pack_bits(vector)}
