"""The feeder decodes an image exactly as the encoder service and the API do: a file gets the
same pixels (so the same vector) whichever path feeds it, large JPEGs included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from clipsearch.models.images import decode_image
from clipsearch.models.preprocess import preprocess
from feeder.prepare import prepare_pixels
from tests import encoder_images as zoo

LIMITS = {"max_bytes": 32 << 20, "max_pixels": 10**8}


def test_feeder_pixels_equal_the_service_pixels(clip, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    files = {"big.jpg": zoo.jpeg(1600, 1200, seed=3), "small.png": zoo.png(40, 30, seed=4),
             "tall.jpg": zoo.jpeg(300, 2400, seed=5)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    spec = clip.preprocess_spec
    for name, data in files.items():
        fed = prepare_pixels(str(tmp_path / name), spec=spec, **LIMITS)
        assert fed.reason is None, fed.detail
        served = clip.preprocess_images([data], **LIMITS)[0]
        np.testing.assert_array_equal(fed.payload, served)
    # the large JPEG really took the reduced decode (a full decode gives other pixels)
    full = preprocess(decode_image(files["big.jpg"], **LIMITS), spec)
    assert not np.array_equal(full, prepare_pixels(str(tmp_path / "big.jpg"), spec=spec,
                                                   **LIMITS).payload)


def test_corrupt_and_missing_files_are_refused_not_raised(clip, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    good = zoo.jpeg(1600, 1200, seed=3)
    (tmp_path / "cut.jpg").write_bytes(good[: len(good) // 3])
    Image.new("RGB", (8, 8)).save(tmp_path / "ok.png")
    cut = prepare_pixels(str(tmp_path / "cut.jpg"), spec=clip.preprocess_spec, **LIMITS)
    gone = prepare_pixels(str(tmp_path / "gone.jpg"), spec=clip.preprocess_spec, **LIMITS)
    assert cut.payload is None and cut.reason is not None and cut.reason.value == "invalid_image"
    assert gone.payload is None and gone.reason is not None and gone.reason.value == "missing_file"
