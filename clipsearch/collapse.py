"""Near-duplicate collapse of a ranked list: keep the best hit of each group.

Greedy leader clustering in rank order: a hit whose cosine to an already kept hit is at least
``threshold`` joins the best-ranked such hit (it is folded into it, and that hit's
``collapsed`` count grows); otherwise it is kept and leads a new group. Only kept hits are
compared with, so the result depends on the ranking alone (not on input order within a
rank), and a page of the collapsed list is a slice of one deterministic list: pagination
stays consistent as long as every page collapses the same window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from clipsearch.embeddings import l2_normalize


@dataclass(frozen=True, slots=True)
class Collapsed:
    kept: list[int]  # positions in the input ranking, best first
    folded: list[int]  # how many hits each kept hit absorbed (same order as kept)
    leader_of: list[int]  # for every input position, the position of its group's kept hit


def collapse(vectors: np.ndarray | Sequence[Sequence[float]], threshold: float) -> Collapsed:
    """Collapse a ranking (rows of ``vectors`` in rank order) at cosine ``threshold``."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError("the collapse threshold is a cosine in (0, 1]")
    mat = np.asarray(vectors, dtype=np.float32)
    if mat.size == 0:
        return Collapsed([], [], [])
    unit = l2_normalize(mat)
    kept: list[int] = []
    folded: list[int] = []
    leader_of: list[int] = []
    for i in range(unit.shape[0]):
        if kept:
            cos = unit[kept] @ unit[i]
            hits = np.flatnonzero(cos >= threshold - 1e-6)
            if hits.size:
                j = int(hits[0])  # the best-ranked kept hit it is a near-duplicate of
                folded[j] += 1
                leader_of.append(kept[j])
                continue
        kept.append(i)
        folded.append(0)
        leader_of.append(i)
    return Collapsed(kept, folded, leader_of)
