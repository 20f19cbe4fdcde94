"""The gateway's background upkeep: complete a flush a writer left owed.

A feeder killed after its last acknowledged write but before its final flush leaves rows the
FTS index has not seen (BM25 statistics off, hybrid rankings differ). The gateway checks at
startup and then every ``interval_s`` (a file test and an index-stats call), and flushes under
the writer lock when no writer holds it.
"""

from __future__ import annotations

import asyncio
import logging

from clipsearch.errors import ClipsearchError
from clipsearch.index.maintenance import complete_pending_flush_if_free

log = logging.getLogger(__name__)
INTERVAL_S = 30.0


async def flush_owed_loop(index: object, *, interval_s: float = INTERVAL_S) -> None:
    """Run until cancelled (at shutdown)."""
    while True:
        try:
            if await complete_pending_flush_if_free(index, "clipsearch serve (pending flush)"):
                log.info("completed a flush an earlier writer left owed")
        except ClipsearchError as exc:
            log.warning("pending-flush check failed: %s", exc.message)
        await asyncio.sleep(interval_s)  # a period, not a wait for something
