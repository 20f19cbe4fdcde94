"""Where image decoding runs: a lane for small images and a pixel-budgeted lane for large ones.

One shared decode pool let a burst of huge images (each a 64-megapixel bitmap while it
decodes) hold every worker and all that memory, and a small upload waited behind them for a
minute (issue 16). Here:

* images up to ``small_pixels`` go to their own threads and never wait for large ones;
* larger images run on a second pool, and only while the pixels being decoded there stay
  within ``pixel_budget`` (a semaphore weighted by pixels; an image larger than the whole
  budget runs alone). Memory for decoding is then bounded by the budget, whatever the
  number of concurrent requests.

The weighted semaphore is hand-written (asyncio has only counting semaphores): waiters are
served in arrival order, so a large image is not starved by a stream of smaller ones.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TypeVar

T = TypeVar("T")


class PixelBudget:
    """A FIFO semaphore over ``capacity`` units (pixels); ``hold(n)`` waits for ``n``."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self.in_use = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    def _wake(self) -> None:
        while self._waiters:
            units, fut = self._waiters[0]
            if fut.done():
                self._waiters.popleft()
                continue
            if self.in_use + units > self.capacity:
                return
            self._waiters.popleft()
            self.in_use += units
            fut.set_result(None)

    @asynccontextmanager
    async def hold(self, units: int) -> AsyncIterator[None]:
        units = min(max(1, units), self.capacity)
        if not self._waiters and self.in_use + units <= self.capacity:
            self.in_use += units
        else:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append((units, fut))
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self.in_use -= units  # granted just as we were cancelled
                    self._wake()
                raise
        try:
            yield
        finally:
            self.in_use -= units
            self._wake()


class DecodeLanes:
    def __init__(self, *, small_pixels: int, pixel_budget: int, small_threads: int = 2,
                 large_threads: int = 2) -> None:
        self.small_pixels = small_pixels
        self.budget = PixelBudget(pixel_budget)
        self._small = ThreadPoolExecutor(max_workers=small_threads,
                                         thread_name_prefix="decode-small")
        self._large = ThreadPoolExecutor(max_workers=large_threads,
                                         thread_name_prefix="decode-large")

    async def run(self, pixels: int, fn: Callable[[], T]) -> T:
        """``fn()`` (a decode of an image of ``pixels`` pixels) on the right lane."""
        loop = asyncio.get_running_loop()
        if pixels <= self.small_pixels:
            return await loop.run_in_executor(self._small, fn)
        async with self.budget.hold(pixels):
            return await loop.run_in_executor(self._large, fn)

    def shutdown(self) -> None:
        self._small.shutdown(wait=False, cancel_futures=True)
        self._large.shutdown(wait=False, cancel_futures=True)
