"""Our preprocessing equals the transformers CLIP image processor, and pickles."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoImageProcessor

from clipsearch.models.preprocess import PreprocessSpec, preprocess, preprocess_batch
from tests.encoder_images import noise_image


@pytest.fixture(scope="module")
def processor(tiny_clip_dir: Path):  # type: ignore[no-untyped-def]
    return AutoImageProcessor.from_pretrained(tiny_clip_dir)


@pytest.mark.parametrize(
    "size", [(224, 224), (300, 200), (200, 300), (640, 480), (57, 999), (12, 9), (225, 224)],
)
def test_equals_transformers_processor(processor, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    spec = PreprocessSpec.from_processor_config(processor.to_dict())
    img = noise_image(*size, seed=sum(size))
    expected = processor(images=img, return_tensors="np")["pixel_values"][0]
    got = preprocess(img, spec)
    assert got.dtype == np.float32 and got.shape == (3, 224, 224)
    assert np.abs(got - expected).max() < 1e-4


def test_other_processor_configs() -> None:
    square = PreprocessSpec.from_processor_config(
        {"size": {"height": 96, "width": 64}, "crop_size": 64, "image_mean": 0.5,
         "image_std": 0.5, "resample": 2})
    assert square.resize_hw == (96, 64) and square.crop_hw == (64, 64)
    assert square.mean == (0.5, 0.5, 0.5)
    out = preprocess(noise_image(30, 40).convert("L"), square)
    assert out.shape == (3, 64, 64) and out.min() >= -1.0 and out.max() <= 1.0


def test_spec_and_function_pickle(processor) -> None:  # type: ignore[no-untyped-def]
    spec = PreprocessSpec.from_processor_config(processor.to_dict())
    fn, spec2 = pickle.loads(pickle.dumps((preprocess, spec)))
    img = noise_image(50, 80)
    assert np.array_equal(fn(img, spec2), preprocess(img, spec))
    batch = preprocess_batch([img, noise_image(80, 50)], spec)
    assert batch.shape == (2, 3, 224, 224)
