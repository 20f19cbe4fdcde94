"""The stored probe: a unit direction in a model's embedding space plus how it was made."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from clipsearch.errors import InvalidRequest

PROBE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
UNIT_TOLERANCE = 1e-3


class UnknownProbe(InvalidRequest):
    """No probe of that name is stored (a bad parameter: 422)."""

    reason = "unknown_probe"


class ProbeMismatch(InvalidRequest):
    """The probe was made with another model or dimension than the one serving queries."""

    reason = "probe_model_mismatch"


class ProbeQuality(BaseModel):
    """Held-out figures of the fitted probe (stratified split, never seen in fitting)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    accuracy: float = Field(ge=0, le=1)
    balanced_accuracy: float = Field(ge=0, le=1)
    n_train: int = Field(ge=0)
    n_test: int = Field(ge=0)


class Probe(BaseModel):
    """``direction`` is unit length; ``coef_norm`` and ``intercept`` give the classifier
    back (``logit = coef_norm * direction·x + intercept``) for scoring images."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=PROBE_NAME_PATTERN)
    attribute: str = Field(min_length=1)
    model_id: str = Field(min_length=1)
    dim: int = Field(ge=2)
    direction: list[float]
    coef_norm: float = Field(gt=0)
    intercept: float
    quality: ProbeQuality
    n_positive: int = Field(ge=1)
    n_negative: int = Field(ge=1)
    method: str = "sklearn LogisticRegression (lbfgs, L2, balanced classes)"
    created: datetime

    @field_validator("direction")
    @classmethod
    def _finite(cls, v: list[float]) -> list[float]:
        if not all(np.isfinite(v)):
            raise ValueError("direction has NaN or infinite values")
        return v

    @model_validator(mode="after")
    def _unit_and_sized(self) -> Probe:
        if len(self.direction) != self.dim:
            raise ValueError(f"direction has {len(self.direction)} values, dim is {self.dim}")
        norm = float(np.linalg.norm(np.asarray(self.direction, dtype=np.float64)))
        if abs(norm - 1.0) > UNIT_TOLERANCE:
            raise ValueError(f"direction must be unit length, has norm {norm:.4f}")
        return self

    @property
    def vector(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=np.float32)

    def decision(self, embeddings: np.ndarray) -> np.ndarray:
        """Logits for unit embeddings (n, dim); > 0 means the attribute is predicted."""
        return np.asarray(embeddings, dtype=np.float32) @ self.vector * self.coef_norm \
            + self.intercept

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(self.model_dump_json(indent=1))
        tmp.replace(path)  # atomic: a reader never sees half a probe
        return path

    @classmethod
    def load(cls, path: Path) -> Probe:
        return cls.model_validate_json(path.read_text())
