"""``clipsearch probe train``: encode labelled images, fit, save under ``<data_dir>/probes``."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from clipsearch.errors import InvalidImage
from clipsearch.models.model import ClipEncoder, batch_threads
from clipsearch.settings import Settings
from clipsearch.steering.fit import FitOptions, fit_probe
from clipsearch.steering.labels import LabelledImage
from clipsearch.steering.probe import PROBE_NAME_PATTERN, Probe
from clipsearch.steering.store import ProbeStore

log = logging.getLogger(__name__)
BATCH = 64


class TrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=PROBE_NAME_PATTERN)
    attribute: str = Field(min_length=1)
    fit: FitOptions = FitOptions()
    overwrite: bool = True


class TrainResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    probe: Probe
    path: str
    skipped: list[str] = Field(description="images that could not be read, with the reason")


class EncodedSet(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    vectors: np.ndarray
    labels: np.ndarray
    skipped: list[str]


def encode_labelled(encoder: ClipEncoder, items: Sequence[LabelledImage], settings: Settings,
                    batch: int = BATCH) -> EncodedSet:
    """Unit image embeddings of the readable images; unreadable ones are skipped and named."""
    vectors: list[np.ndarray] = []
    labels: list[bool] = []
    skipped: list[str] = []
    for start in range(0, len(items), batch):
        pixels, kept = [], []
        for item in items[start : start + batch]:
            try:
                data = item.path.read_bytes()
                pixels.append(encoder.preprocess_images(
                    [data], max_bytes=settings.max_image_bytes,
                    max_pixels=settings.max_image_pixels))
                kept.append(item.positive)
            except (OSError, InvalidImage) as exc:
                skipped.append(f"{item.path}: {exc}")
        if pixels:
            vectors.append(encoder.embed_pixels(np.concatenate(pixels)).vectors)
            labels.extend(kept)
    dim = encoder.dim
    return EncodedSet(vectors=np.concatenate(vectors) if vectors else np.zeros((0, dim),
                                                                                np.float32),
                      labels=np.asarray(labels, dtype=bool), skipped=skipped)


def train_probe(settings: Settings, request: TrainRequest, items: Sequence[LabelledImage],
                encoder: ClipEncoder | None = None) -> TrainResult:
    enc = encoder or ClipEncoder.from_settings(settings, threads=batch_threads(settings))
    encoded = encode_labelled(enc, items, settings)
    for line in encoded.skipped:
        log.warning("skipped %s", line)
    probe = fit_probe(encoded.vectors, encoded.labels, name=request.name,
                      attribute=request.attribute, model_id=enc.model_id, options=request.fit)
    store = ProbeStore(settings, model_id=enc.model_id, dim=enc.dim)
    path = store.save(probe, overwrite=request.overwrite)
    return TrainResult(probe=probe, path=str(path), skipped=encoded.skipped)
