"""A marker file that says "this table has writes that ``flush`` has not folded in yet".

Written (and fsynced) before the first write after a flush, removed once ``flush`` (optimize +
FTS rebuild) completed. A writer killed in between leaves it behind, so the next feeder run,
even one that writes nothing, and the gateway see that the flush is still owed and complete it.
Unindexed rows are a second sign (``EmbeddedIndex.flush_pending``), for tables written before
the marker existed.
"""

from __future__ import annotations

import os
from pathlib import Path


class PendingFlushMarker:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._written = False  # by this process since its last flush

    def exists(self) -> bool:
        return self.path.exists()

    def mark(self) -> None:
        """Before a write: make sure the marker is on disk (once per flush cycle)."""
        if self._written and self.path.exists():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w", encoding="utf-8") as fh:
            fh.write(f"writes by pid {os.getpid()} wait for a flush\n")
            fh.flush()
            os.fsync(fh.fileno())
        self._written = True

    def clear(self) -> None:
        """After a completed flush."""
        self.path.unlink(missing_ok=True)
        self._written = False
