"""The embedded engine's storage faults, answered as faults: ``BackendUnavailable`` (503 +
Retry-After) with a plain reason instead of LanceDB's ``RuntimeError``/``OSError``.

LanceDB reports a missing, unreadable or damaged table (data dir renamed or deleted, files
without read permission, a truncated data file) as ``RuntimeError("lance error: ...")`` with
the absolute path and a Rust source location in the text, sometimes as ``OSError`` or as a
``ValueError`` ("Not found"). The details go to the server log; callers get a safe message.
Nothing is cached about the failure: the next call reads the files again, so the index
recovers by itself once they are back.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Concatenate, ParamSpec, Protocol, TypeVar

import pyarrow as pa
from lancedb.table import AsyncTable

from clipsearch.errors import BackendUnavailable, ClipsearchError

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

UNAVAILABLE_MESSAGE = ("the index cannot be read right now (its files are missing, unreadable "
                       "or damaged); retry later")
RETRY_AFTER_S = 5
# Texts by which LanceDB's ValueErrors name a storage fault (rather than a bad argument).
_IO_MARKERS = ("lance error", "lanceerror", "not found", "no such file", "permission denied",
               "i/o", "io error", "failed to fill", "corrupt")
PROBE_ROWS = 16


def is_storage_fault(exc: BaseException) -> bool:
    """Whether ``exc`` (raised by LanceDB) means the table's files cannot be read."""
    if isinstance(exc, ClipsearchError):
        return False
    if isinstance(exc, OSError | RuntimeError):
        return True
    if isinstance(exc, ValueError):
        text = str(exc).lower()
        return any(marker in text for marker in _IO_MARKERS)
    return False


def unavailable(exc: BaseException, what: str) -> BackendUnavailable:
    """The safe ``BackendUnavailable`` for a storage fault; the details are logged here."""
    log.warning("embedded index: %s failed: %s: %s", what, type(exc).__name__, exc)
    if "commit conflict" in str(exc).lower():  # two writers raced (see writer_lock)
        return BackendUnavailable("another write to the index committed at the same time; "
                                  "retry", reason="index_busy", retry_after_s=1)
    return BackendUnavailable(UNAVAILABLE_MESSAGE, reason="index_unavailable",
                              retry_after_s=RETRY_AFTER_S)


class _HasPath(Protocol):
    @property
    def path(self) -> object: ...


S = TypeVar("S", bound=_HasPath)


def storage_faults(
    method: Callable[Concatenate[S, P], Awaitable[R]],
) -> Callable[Concatenate[S, P], Awaitable[R]]:
    """Decorate an async engine method: storage faults become ``BackendUnavailable``."""

    @functools.wraps(method)
    async def guarded(self: S, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(self, *args, **kwargs)
        except Exception as exc:
            if is_storage_fault(exc):
                raise unavailable(exc, f"{method.__name__} on {self.path}") from exc
            raise

    return guarded


def probe_offsets(rows: int, samples: int = PROBE_ROWS) -> list[int]:
    """Row offsets spread over the table, first and last included."""
    if rows <= 0:
        return []
    step = max(1, rows // samples)
    return sorted({*range(0, rows, step), rows - 1})


async def probe_read(table: AsyncTable, columns: list[str]) -> int:
    """Read ``columns`` of a few rows spread over the table (so every large data file is
    touched); returns the row count. A truncated or missing file fails here, where a count
    (manifest only) would not notice."""
    rows = await table.count_rows()
    offsets = probe_offsets(rows)
    if offsets:
        got: pa.Table = await table.take_offsets(offsets).select(columns).to_arrow()
        if got.num_rows != len(offsets):
            raise RuntimeError(f"probe read {got.num_rows} of {len(offsets)} rows")
    return rows
