"""``relevance`` per hybrid hit and ``min_relevance``, from the index's calibration
(``clipsearch.quality.calibration``; fitted by ``clipsearch eval --calibrate --apply``)."""

from __future__ import annotations

from clipsearch.errors import InvalidRequest
from clipsearch.quality.calibration import Calibration, features
from clipsearch.search import Mode, SearchResult


def check_min_relevance(min_relevance: float | None, mode: Mode,
                        calibration: Calibration | None) -> None:
    """Refuse ``min_relevance`` that cannot be served, before any work is done."""
    if min_relevance is None:
        return
    if calibration is None:
        raise InvalidRequest(
            "min_relevance needs a relevance calibration for this index, and there is none: "
            "fit one with `clipsearch eval --calibrate --apply` on labelled queries",
            reason="no_calibration")
    if mode != Mode.hybrid:
        raise InvalidRequest("min_relevance applies to hybrid searches (the calibration is "
                             "fitted on hybrid hits)", reason="no_calibration")


def with_relevance(result: SearchResult, calibration: Calibration | None, mode: Mode,
                   offset: int, min_relevance: float | None) -> SearchResult:
    """Hits with ``relevance`` set (hybrid mode with a calibration), those below
    ``min_relevance`` left out."""
    if calibration is None or mode != Mode.hybrid or not result.hits:
        return result
    rows = [features(h.scores.lexical, h.scores.vector, offset + i + 1)
            for i, h in enumerate(result.hits)]
    probs = calibration.predict(rows).tolist()
    hits = [h.model_copy(update={"relevance": p}) for h, p in zip(result.hits, probs,
                                                                   strict=True)
            if min_relevance is None or p >= min_relevance]
    return result.model_copy(update={"hits": hits})
