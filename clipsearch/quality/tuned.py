"""Tuned fusion per dataset: written by ``clipsearch eval --sweep --apply``, read by the API.

The sweep chooses the fusion on one split (``chosen_on``, normally ``val``) and the report
measures it on another (``reported_on``, normally ``test``); both numbers are stored with the
parameters. The API uses a dataset's entry as that dataset's default fusion when a request
filters on exactly that one dataset and sets no fusion parameter itself; the ``*`` entry (if
any) applies to every other request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from clipsearch.quality.store import quality_dir, write_json_atomic
from clipsearch.search import HybridParameters
from clipsearch.settings import Settings

FILE = "fusion.json"
ANY_DATASET = "*"


class TunedFusion(BaseModel):
    hybrid: HybridParameters
    label: str
    objective: str
    chosen_on: str = Field(description="split the sweep chose on")
    objective_chosen: float
    reported_on: str = Field(description="split the numbers below were measured on")
    objective_reported: float | None = None
    model: str
    source: str


class TunedFusions(BaseModel):
    datasets: dict[str, TunedFusion] = Field(default_factory=dict)

    def for_datasets(self, datasets: list[str]) -> tuple[str, TunedFusion] | None:
        """The entry a request filtering on ``datasets`` uses, with its key."""
        if len(datasets) == 1 and datasets[0] in self.datasets:
            return datasets[0], self.datasets[datasets[0]]
        if ANY_DATASET in self.datasets:
            return ANY_DATASET, self.datasets[ANY_DATASET]
        return None


def fusion_path(settings: Settings) -> Path:
    return quality_dir(settings) / FILE


def load(path: Path) -> TunedFusions:
    """The stored tuning (empty when there is none). A broken file raises ValueError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return TunedFusions()
    try:
        return TunedFusions.model_validate(json.loads(text))
    except (ValueError, ValidationError) as exc:
        raise ValueError(f"{path} is not a tuned-fusion file: {exc}") from exc


def apply(settings: Settings, entries: dict[str, TunedFusion]) -> Path:
    """Store ``entries`` (dataset -> tuning), keeping the other datasets' entries."""
    path = fusion_path(settings)
    current = load(path)
    current.datasets.update(entries)
    write_json_atomic(path, current)
    return path


@dataclass
class TunedFusionCache:
    """The API's view of the file: re-read when its modification time changes (so
    ``eval --apply`` takes effect without a restart). A broken file counts as none (and
    ``error`` says why: /fusion shows it)."""

    path: Path
    _stamp: tuple[int, int] | None = None
    _value: TunedFusions = field(default_factory=TunedFusions)
    error: str | None = None

    def get(self) -> TunedFusions:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            self._stamp, self._value, self.error = None, TunedFusions(), None
            return self._value
        if stamp != self._stamp:
            try:
                self._value, self.error = load(self.path), None
            except ValueError as exc:
                self._value, self.error = TunedFusions(), str(exc)
            self._stamp = stamp
        return self._value
