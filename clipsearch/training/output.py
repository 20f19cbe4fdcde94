"""A trained model folder written beside its final place and renamed into it, so the output
directory is never half written: a killed run leaves the previous model (or nothing) there."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_output(out: Path) -> Iterator[Path]:
    """A fresh staging folder beside ``out``; when the block ends normally it replaces
    ``out`` (readable by other users, like any model folder), else it is removed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield staging
        staging.chmod(0o755)  # mkdtemp makes it 0700
        if out.exists():
            shutil.rmtree(out)
        os.rename(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
