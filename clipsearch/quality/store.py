"""Where an index's learned search-quality state lives on disk.

``<data_dir>/quality/<index key>/[<generation>/]<name>.json``: the index key names the index
the API serves (``embedded-<table>`` or ``vespa-<namespace>``), so two indexes sharing a data
folder keep their own tuning; a model generation (when the index has them) gets a sub-folder,
since a calibration learned on one embedding space says nothing about another. Files are
written atomically (temp file + rename), so a reader never sees half a file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pydantic import BaseModel

from clipsearch.settings import Backend, Settings

DEFAULT_GENERATION = None


def index_key(settings: Settings) -> str:
    if settings.backend == Backend.vespa:
        return f"vespa-{settings.vespa_namespace}"
    return f"embedded-{settings.table}"


def quality_dir(settings: Settings, generation: str | None = DEFAULT_GENERATION) -> Path:
    base = settings.data_dir / "quality" / index_key(settings)
    return base / generation if generation else base


def write_json_atomic(path: Path, model: BaseModel) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(model.model_dump_json(indent=2))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
