"""The generations of an index on local disk: one small JSON file, replaced atomically.

``<index dir>/generations.json`` holds the catalog (every generation, the active one's name).
Writers take an exclusive ``flock`` on ``generations.lock`` for their read-modify-write and
replace the file with ``os.replace`` (readers see the old or the new catalog, never a mix).
Readers re-read it only when ``stat`` says it changed (~2 µs a call), so a running API follows
``clipsearch activate`` from another process on its next request, without a restart.

An index created before generations existed has no file: it is read as one complete
generation ``g0`` over the configured table, and the file is written on the first change.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from clipsearch.index.generations import LEGACY_NAME, Catalog, Generation, GenerationState

REGISTRY_FILE = "generations.json"
LOCK_FILE = "generations.lock"
T = TypeVar("T")


def legacy_catalog(index_dir: Path, table: str, dim: int) -> Catalog:
    table_dir = index_dir / f"{table}.lance"
    created = (datetime.fromtimestamp(table_dir.stat().st_mtime, UTC) if table_dir.exists()
               else datetime.now(UTC))
    gen = Generation(name=LEGACY_NAME, table=table, dim=dim, created=created,
                     state=GenerationState.complete)
    return Catalog(active=LEGACY_NAME, generations=[gen])


class GenerationRegistry:
    def __init__(self, index_dir: Path, *, table: str, dim: int) -> None:
        self._dir = Path(index_dir)
        self._path = self._dir / REGISTRY_FILE
        self._path_str = str(self._path)  # os.stat(str) skips pathlib's __fspath__ per call
        self._table = table
        self._dim = dim
        self._cached: Catalog | None = None
        self._stamp: tuple[int, int, int] | None = None

    @property
    def path(self) -> Path:
        return self._path

    def exists(self) -> bool:
        return self._path.is_file()

    def read(self) -> Catalog:
        """The current catalog (re-read only when the file changed)."""
        try:
            st = os.stat(self._path_str)
        except FileNotFoundError:
            self._cached, self._stamp = None, None
            return legacy_catalog(self._dir, self._table, self._dim)
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._cached is None or stamp != self._stamp:
            self._cached = Catalog.model_validate_json(self._path.read_bytes())
            self._stamp = stamp
        return self._cached

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self._dir.mkdir(parents=True, exist_ok=True)
        with open(self._dir / LOCK_FILE, "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def update(self, change: Callable[[Catalog], T]) -> T:
        """Apply ``change`` to a fresh copy of the catalog under the lock and write it."""
        with self._locked():
            self._cached = None
            catalog = self.read().model_copy(deep=True)
            result = change(catalog)
            self._write(catalog)
            return result

    def _write(self, catalog: Catalog) -> None:
        stored = catalog.model_copy(update={"generations": [
            g.model_copy(update={"documents": None, "active": False})
            for g in catalog.generations]})
        tmp = self._path.with_name(f".{REGISTRY_FILE}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(stored.model_dump_json(indent=1, exclude_none=True))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._path)
        self._cached, self._stamp = None, None
