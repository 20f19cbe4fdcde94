"""One writer per index at a time: an OS file lock under the index folder.

Two feeders writing one LanceDB table at once each merge-insert the same ids from their own
table version, and both inserts commit: the table then holds an id twice. Every process that
writes an index (``clipsearch feed``, ``clipsearch index check --repair``, the gateway's
pending-flush repair, and any later reindex/prune command) takes this lock first.

The lock is the ``filelock`` package's ``FileLock`` (``flock`` on POSIX): the kernel releases
it when the holder exits, killed or not, so a crash never leaves the index locked. Beside it a
small JSON note says who holds it (pid, command, since) for the message the next writer gets.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock, Timeout
from pydantic import BaseModel, ValidationError

from clipsearch.errors import ClipsearchError

log = logging.getLogger(__name__)

LOCK_FILE = ".writer.lock"
HOLDER_FILE = ".writer.json"


class WriterBusy(ClipsearchError):
    """Another process is writing this index (the caller chose not to wait, or gave up)."""

    reason = "writer_busy"


class WriterHolder(BaseModel):
    pid: int
    command: str
    since: str
    host: str = ""

    def describe(self) -> str:
        where = f" on {self.host}" if self.host and self.host != socket.gethostname() else ""
        return f"pid {self.pid}{where}, {self.command!r}, since {self.since}"


def read_holder(index_dir: Path) -> WriterHolder | None:
    """Who holds the lock, as its holder wrote it (None when unknown)."""
    try:
        return WriterHolder.model_validate_json((index_dir / HOLDER_FILE).read_text())
    except (OSError, ValidationError, ValueError):
        return None


def _write_holder(index_dir: Path, command: str) -> None:
    holder = WriterHolder(pid=os.getpid(), command=command, host=socket.gethostname(),
                          since=datetime.now(UTC).isoformat(timespec="seconds"))
    tmp = index_dir / f"{HOLDER_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(holder.model_dump()))
    tmp.replace(index_dir / HOLDER_FILE)


def busy_message(index_dir: Path) -> str:
    holder = read_holder(index_dir)
    who = holder.describe() if holder is not None else "unknown process"
    return f"another writer ({who}) holds the index at {index_dir}"


@contextmanager
def writer_lock(
    index_dir: Path,
    command: str,
    *,
    wait: bool = False,
    timeout_s: float | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold the index's writer lock for the ``with`` block.

    ``wait=False``: raise ``WriterBusy`` at once when another process holds it. ``wait=True``:
    say so through ``on_wait`` (default: the log), then block until it is free (at most
    ``timeout_s`` seconds if given, then ``WriterBusy``)."""
    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(index_dir / LOCK_FILE), thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        message = busy_message(index_dir)
        if not wait:
            raise WriterBusy(f"{message}; let it finish, or wait for it (feed --wait)") from None
        (on_wait or log.warning)(f"{message}; waiting for it to finish")
        started = time.monotonic()
        try:
            lock.acquire(timeout=-1 if timeout_s is None else timeout_s)
        except Timeout:
            raise WriterBusy(f"{busy_message(index_dir)}; gave up after "
                             f"{time.monotonic() - started:.0f} s") from None
    try:
        _write_holder(index_dir, command)
        yield
    finally:
        try:
            (index_dir / HOLDER_FILE).unlink(missing_ok=True)
        finally:
            lock.release()


@contextmanager
def writer_lock_if_free(index_dir: Path, command: str) -> Iterator[bool]:
    """Hold the lock for the block if it is free now (yields True), else yield False at once.
    For background maintenance that skips its turn while another writer works."""
    held = writer_lock(index_dir, command, wait=False)
    try:
        held.__enter__()
    except WriterBusy:
        yield False
        return
    try:
        yield True
    finally:
        held.__exit__(None, None, None)


def index_dir_of(index: object) -> Path | None:
    """The folder of an on-disk index (the embedded engine's ``path``); None for a server
    engine (Vespa serialises writes per document itself)."""
    path = getattr(index, "path", None)
    return path if isinstance(path, Path) else None
