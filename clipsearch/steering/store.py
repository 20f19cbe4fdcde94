"""``ProbeStore``: probes as JSON files under ``<data_dir>/probes/``, checked against the
model that serves queries."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import ValidationError

from clipsearch.errors import InvalidRequest
from clipsearch.settings import Settings
from clipsearch.steering.probe import PROBE_NAME_PATTERN, Probe, ProbeMismatch, UnknownProbe
from clipsearch.steering.steer import SteerSpec

PROBES_DIR = "probes"


def canonical_model_id(model_id: str) -> str:
    """A local model folder by its absolute path (``./m`` and ``/abs/m`` are one model);
    a hub id as written."""
    path = Path(model_id).expanduser()
    if path.is_dir():
        return str(path.resolve())
    return model_id


class ProbeStore:
    """Loads and saves probes. ``model_id`` / ``dim``: the serving model (default: the
    settings' ``model`` and ``embedding_dim``); ``get`` refuses a probe made with another."""

    def __init__(self, settings: Settings, *, model_id: str | None = None,
                 dim: int | None = None) -> None:
        self._dir = settings.data_dir / PROBES_DIR
        self._model_id = model_id or settings.model
        self._dim = dim or settings.embedding_dim

    @property
    def directory(self) -> Path:
        return self._dir

    def path(self, name: str) -> Path:
        return self._dir / f"{name}.json"

    def names(self) -> list[str]:
        if not self._dir.is_dir():
            return []
        return sorted(p.stem for p in self._dir.glob("*.json"))

    def read(self, name: str) -> Probe:
        """The stored probe, without the model check (for listing)."""
        if re.match(PROBE_NAME_PATTERN, name) is None:
            raise UnknownProbe(f"invalid probe name {name!r}")
        path = self.path(name)
        if not path.is_file():
            known = ", ".join(self.names()) or "none"
            raise UnknownProbe(f"no probe named {name!r} in {self._dir} (known: {known})")
        try:
            return Probe.load(path)
        except (ValidationError, ValueError) as exc:
            raise InvalidRequest(f"probe file {path} is not a valid probe: {exc}",
                                 reason="invalid_probe") from exc

    def get(self, name: str) -> Probe:
        """The probe, checked: same model and dimension as the serving model."""
        probe = self.read(name)
        check_compatible(probe, model_id=self._model_id, dim=self._dim)
        return probe

    def for_steer(self, spec: SteerSpec) -> Probe:
        return self.get(spec.probe)

    def save(self, probe: Probe, *, overwrite: bool = True) -> Path:
        path = self.path(probe.name)
        if path.exists() and not overwrite:
            raise InvalidRequest(f"probe {probe.name!r} exists ({path})", reason="probe_exists")
        return probe.save(path)


def check_compatible(probe: Probe, *, model_id: str, dim: int) -> None:
    if probe.dim != dim:
        raise ProbeMismatch(f"probe {probe.name!r} is {probe.dim}-d but the model serving "
                            f"queries makes {dim}-d embeddings")
    if canonical_model_id(probe.model_id) != canonical_model_id(model_id):
        raise ProbeMismatch(f"probe {probe.name!r} was trained on embeddings of model "
                            f"{probe.model_id!r}, but queries are encoded with {model_id!r}; "
                            "train it again with this model")
