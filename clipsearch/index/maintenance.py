"""Completing a flush that a writer left owed (killed between its last write and the end of
its flush), by whoever comes next: the next feeder run, or the gateway in the background."""

from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

from clipsearch.index.writer_lock import index_dir_of, writer_lock_if_free

log = logging.getLogger(__name__)


@runtime_checkable
class FlushTracking(Protocol):
    """An engine that knows whether writes wait for ``flush`` (the embedded one)."""

    async def flush_pending(self) -> bool: ...

    async def flush(self) -> None: ...


async def complete_pending_flush(index: object) -> bool:
    """Flush ``index`` if it says writes wait for it; True if it flushed. The caller holds
    the writer lock (the feeder does)."""
    if not isinstance(index, FlushTracking) or not await index.flush_pending():
        return False
    log.info("the index has writes that were never flushed (a writer stopped early): "
             "flushing now")
    await index.flush()
    return True


async def complete_pending_flush_if_free(index: object, command: str) -> bool:
    """``complete_pending_flush`` under the writer lock, skipped (False) while another
    process holds the lock: that writer flushes when it finishes."""
    if not isinstance(index, FlushTracking):
        return False
    lock_dir = index_dir_of(index)
    if lock_dir is None:
        return await complete_pending_flush(index)
    if not await index.flush_pending():
        return False
    with writer_lock_if_free(lock_dir, command) as held:
        if not held:
            log.info("a flush is owed but another writer holds the index; it will flush")
            return False
        return await complete_pending_flush(index)
