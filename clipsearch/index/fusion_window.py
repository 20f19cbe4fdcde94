"""How deep a hybrid page may reach when the fusion cannot run inside Vespa, the same rule
in both engines.

Vespa fuses ``rrf`` with k = 60, ``linear`` and ``score`` in its rank profiles, so any
page up to ``offset`` 1000 is served there. ``rrf`` with another ``rrf_k`` and
``rrf_textbook`` are fused by the Vespa client from the whole rerank window
(``2 x plan.window`` hits, ``plan.window = max(candidates, offset + limit)``), which it must
fetch through ``/search/`` in pages of at most ``maxHits`` (400) from offsets up to
``maxOffset`` (1000): at most 1,400 hits. A plan that needs more is refused with 422 naming
the limit, by the Vespa client AND by the embedded engine (which could fuse it, but then
the two engines would answer the same request differently).
"""

from __future__ import annotations

from clipsearch.errors import InvalidRequest
from clipsearch.search import Fusion, Mode, SearchPlan

VESPA_MAX_HITS = 400  # Vespa's default maxHits (query profile)
VESPA_MAX_OFFSET = 1000  # Vespa's default maxOffset
MAX_CLIENT_FUSED_HITS = VESPA_MAX_OFFSET + VESPA_MAX_HITS
SERVER_RRF_K = 60  # the k compiled into the Vespa ``hybrid`` profile (schema_names.RRF_K)


def fused_by_client(plan: SearchPlan) -> bool:
    """Whether the Vespa client (not a rank profile) fuses this plan."""
    if plan.mode != Mode.hybrid:
        return False
    fusion = plan.hybrid.fusion
    return fusion == Fusion.rrf_textbook or (fusion == Fusion.rrf
                                             and plan.hybrid.rrf_k != SERVER_RRF_K)


def fusion_hits(plan: SearchPlan) -> int:
    """How many hits a client-side fusion needs: both legs' windows."""
    return 2 * plan.window


class FusionWindowTooDeep(InvalidRequest):
    reason = "fusion_window_too_deep"


def check_fusion_window(plan: SearchPlan, *, client_fused: bool | None = None) -> None:
    """Refuse a client-fused plan whose window exceeds what Vespa can return (422).
    ``client_fused``: override ``fused_by_client`` (the Vespa client's exact-fusion mode)."""
    fused = fused_by_client(plan) if client_fused is None else client_fused
    if not fused or fusion_hits(plan) <= MAX_CLIENT_FUSED_HITS:
        return
    per_leg = MAX_CLIENT_FUSED_HITS // 2
    raise FusionWindowTooDeep(
        f"hybrid fusion {plan.hybrid.fusion.value} with rrf_k={plan.hybrid.rrf_k} is fused "
        f"from both legs' top max(candidates, offset + limit) = {plan.window} hits each; "
        f"the most that can be fused is {per_leg} per leg ({MAX_CLIENT_FUSED_HITS} hits, "
        f"Vespa's maxOffset + maxHits): lower candidates or offset + limit to {per_leg}, "
        f"or use rrf_k={SERVER_RRF_K} or another fusion")
