"""Embedding batches: float32, unit length, tagged with the model that made them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clipsearch.errors import InvalidRequest, VectorDimensionError

ZERO_NORM = 1e-6


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32). A zero or non-finite row is an error."""
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    if not np.all(np.isfinite(arr)):
        raise InvalidRequest("vector has NaN or infinite values", reason="invalid_vector")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    if np.any(norms < ZERO_NORM):
        raise InvalidRequest("vector is (close to) zero and has no direction",
                             reason="degenerate_vector")
    return (arr / norms).astype(np.float32)


def check_dimension(vector: np.ndarray | list[float], dim: int) -> None:
    size = len(vector)
    if size != dim:
        raise VectorDimensionError(
            f"query vector has {size} dimensions but the index stores {dim}-d embeddings"
        )


@dataclass(frozen=True)
class Embeddings:
    """``vectors`` has shape (n, dim), float32, rows unit length."""

    model_id: str
    vectors: np.ndarray

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or self.vectors.dtype != np.float32:
            raise ValueError("Embeddings.vectors must be a 2-d float32 array")

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return int(self.vectors.shape[0])
