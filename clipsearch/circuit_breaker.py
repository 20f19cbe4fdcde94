"""A small circuit breaker for calls to a dependency (the encoder service).

Hand-written (about 60 lines): the Python breakers on PyPI are either sync-only (``pybreaker``
needs Tornado for coroutines) or unmaintained, and this one needs no task of its own.

* closed: calls go through; ``failures`` consecutive failures open it.
* open: calls fail at once with ``BackendUnavailable`` and a ``Retry-After`` of the time left,
  for ``cooldown_s``.
* half-open: after the cool-down one call goes through as the probe (a request, or the
  gateway's ``/ready`` ping); its success closes the breaker, its failure opens it again.
  Other calls meanwhile still fail fast.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from enum import StrEnum

from clipsearch.errors import BackendUnavailable


class BreakerState(StrEnum):
    closed = "closed"
    open = "open"
    half_open = "half_open"


class CircuitBreaker:
    def __init__(self, *, failures: int = 3, cooldown_s: float = 5.0, name: str = "dependency",
                 reason: str = "unavailable", clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = max(1, failures)
        self.cooldown_s = cooldown_s
        self.name = name
        self.reason = reason
        self._clock = clock
        self._consecutive = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.closed
        if self._clock() - self._opened_at >= self.cooldown_s:
            return BreakerState.half_open
        return BreakerState.open

    def before_call(self) -> None:
        """Raise ``BackendUnavailable`` unless this call may go through."""
        state = self.state
        if state is BreakerState.closed:
            return
        if state is BreakerState.half_open and not self._probing:
            self._probing = True  # this call is the probe
            return
        assert self._opened_at is not None
        left = self.cooldown_s - (self._clock() - self._opened_at)
        raise BackendUnavailable(
            f"the {self.name} failed {self._consecutive} times in a row; not calling it for "
            f"a few seconds", reason=self.reason, retry_after_s=max(1, math.ceil(left)))

    def record_success(self) -> None:
        self._consecutive = 0
        self._opened_at = None
        self._probing = False

    def record_failure(self) -> None:
        self._consecutive += 1
        if self._probing or self._consecutive >= self.failures:
            self._opened_at = self._clock()
        self._probing = False

    def release_probe(self) -> None:
        """The probe call ended without a verdict (e.g. cancelled): let another one try."""
        self._probing = False
