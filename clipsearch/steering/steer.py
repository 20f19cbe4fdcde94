"""Steering a query vector with a probe: ``normalize(q + scale * direction)``."""

from __future__ import annotations

import math
import re

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from clipsearch.embeddings import l2_normalize
from clipsearch.errors import InvalidRequest, VectorDimensionError
from clipsearch.steering.probe import PROBE_NAME_PATTERN, Probe

MAX_SCALE = 2.0
_STEER = re.compile(r"^\s*(?P<name>[^:\s]+)\s*:\s*(?P<scale>[^:\s]+)\s*$")


class SteerSpec(BaseModel):
    """One ``steer=<probe>:<scale>`` request parameter, validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    probe: str = Field(pattern=PROBE_NAME_PATTERN)
    scale: float = Field(ge=-MAX_SCALE, le=MAX_SCALE)


def parse_steer(text: str) -> SteerSpec:
    """``"textness:1.5"`` -> ``SteerSpec(probe="textness", scale=1.5)``; ``InvalidRequest``
    (reason ``invalid_steer``) for anything else."""
    match = _STEER.match(text)
    if match is None:
        raise InvalidRequest(f"steer must look like <probe>:<scale>, got {text!r}",
                             reason="invalid_steer")
    name = match.group("name")
    if re.match(PROBE_NAME_PATTERN, name) is None:
        raise InvalidRequest(f"invalid probe name {name!r}", reason="invalid_steer")
    try:
        scale = float(match.group("scale"))
    except ValueError:
        raise InvalidRequest(f"steer scale {match.group('scale')!r} is not a number",
                             reason="invalid_steer") from None
    check_scale(scale)
    return SteerSpec(probe=name, scale=scale)


def check_scale(scale: float) -> None:
    if not math.isfinite(scale) or abs(scale) > MAX_SCALE:
        raise InvalidRequest(f"steer scale must be in [-{MAX_SCALE:g}, {MAX_SCALE:g}], "
                             f"got {scale}", reason="invalid_steer")


def apply_steer(vector: np.ndarray, probe: Probe, scale: float) -> np.ndarray:
    """The unit query vector moved along the probe's direction: ``q + scale * d``,
    renormalised, float32, same shape as ``vector`` (1-d or (1, dim)).

    Apply it to the TEXT query vector (seed 003: the text side steers better). Scale 0
    returns the query unchanged (normalised). Raises ``InvalidRequest`` for a scale outside
    [-2, 2], ``VectorDimensionError`` for a vector of another dimension than the probe, and
    ``InvalidRequest`` (``degenerate_vector``) if the sum cancels to zero.
    """
    check_scale(scale)
    q = np.asarray(vector, dtype=np.float32)
    flat = q.reshape(-1)
    if flat.shape[0] != probe.dim:
        raise VectorDimensionError(f"query vector has {flat.shape[0]} dimensions but probe "
                                   f"{probe.name!r} is {probe.dim}-d")
    steered = l2_normalize(l2_normalize(flat)[0] + np.float32(scale) * probe.vector)[0]
    return steered.reshape(q.shape)
