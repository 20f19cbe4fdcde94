"""``ordered_map``: run an async function over items with a bounded number in flight, yield
the results in input order. The feeder's one pipelining primitive: decoding batches ahead in a
thread or process pool, worker processes kept busy, several encoder requests in flight."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


async def ordered_map(fn: Callable[[T], Awaitable[R]], items: Iterable[T], *,
                      inflight: int) -> AsyncIterator[R]:
    """``fn(item)`` for each item, at most ``inflight`` running at once, results in order.

    Items are pulled lazily, so memory holds at most ``inflight`` results however many items
    there are. The first failure propagates (in order); leaving early cancels what is running.
    """
    if inflight < 1:
        raise ValueError("inflight must be >= 1")
    pending: deque[asyncio.Future[R]] = deque()
    try:
        for item in items:
            pending.append(asyncio.ensure_future(fn(item)))
            if len(pending) >= inflight:
                yield await pending.popleft()
        while pending:
            yield await pending.popleft()
    finally:
        for fut in pending:
            fut.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
