"""Embeddings for evaluation, through the encoder library the feeder and the API use."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from clipsearch.errors import InvalidImage
from clipsearch.evaluation.data import LabelledImage
from clipsearch.models.model import ClipEncoder, batch_threads
from clipsearch.models.preprocess import image_pixels
from clipsearch.settings import Settings


@dataclass
class ImageVectors:
    items: list[LabelledImage]
    vectors: np.ndarray  # (len(items), dim), unit rows
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (id, reason)


class EvalEncoder:
    def __init__(self, encoder: ClipEncoder, settings: Settings) -> None:
        self.encoder = encoder
        self._settings = settings

    @classmethod
    def load(cls, model: str, settings: Settings) -> EvalEncoder:
        """``model`` with the configured runtime (``CLIPSEARCH_RUNTIME``) like every other
        in-process user; evaluation is a batch job, so it takes every core."""
        return cls(ClipEncoder.from_settings(settings, model=model,
                                             threads=batch_threads(settings)), settings)

    @property
    def model_id(self) -> str:
        return self.encoder.model_id

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.encoder.embed_texts(list(texts)).vectors

    def images(self, items: Sequence[LabelledImage], batch: int = 64) -> ImageVectors:
        """Embed every image that decodes; the others are skipped with their reason."""
        kept: list[LabelledImage] = []
        skipped: list[tuple[str, str]] = []
        chunks: list[np.ndarray] = []
        pending: list[np.ndarray] = []
        spec = self.encoder.preprocess_spec
        for it in items:
            try:  # the pixels the feeder and the encoder service make of this file
                pixels = image_pixels(it.path.read_bytes(), spec,
                                      max_bytes=self._settings.max_image_bytes,
                                      max_pixels=self._settings.max_image_pixels)
            except (OSError, InvalidImage) as exc:
                skipped.append((it.id, str(exc)))
                continue
            kept.append(it)
            pending.append(pixels)
            if len(pending) == batch:
                chunks.append(self.encoder.embed_pixels(np.stack(pending)).vectors)
                pending = []
        if pending:
            chunks.append(self.encoder.embed_pixels(np.stack(pending)).vectors)
        vectors = np.concatenate(chunks) if chunks else np.zeros((0, self.dim), np.float32)
        return ImageVectors(items=kept, vectors=vectors, skipped=skipped)
