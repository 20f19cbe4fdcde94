"""Safe decoding: the bad-image zoo gives the right error or a correct RGB image."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from clipsearch.errors import ImageTooLarge, InvalidImage
from clipsearch.models.images import decode_image
from tests import encoder_images as zoo

LIMITS = {"max_bytes": 10 * 1024 * 1024, "max_pixels": 40_000_000}


def px(img: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    value = img.getpixel(xy)
    assert isinstance(value, tuple)
    return value


def test_plain_jpeg_and_png_decode_to_rgb() -> None:
    for data in (zoo.jpeg(64, 48), zoo.png(64, 48)):
        img = decode_image(data, **LIMITS)
        assert img.mode == "RGB" and img.size == (64, 48)
    exact = decode_image(zoo.png(5, 7, seed=3), **LIMITS)
    assert np.array_equal(np.asarray(exact), np.asarray(zoo.noise_image(5, 7, seed=3)))


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "empty"),
        (b"hello, this is a text file\n", "not a recognised image"),
        (zoo.jpeg(128, 128)[:600], "header is corrupt"),
        (zoo.jpeg(128, 128)[:6000], "JPEG data is truncated or corrupt"),
        (zoo.png(64, 64)[:100], "truncated or corrupt"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "image"),
    ],
    ids=["empty", "text", "jpeg-cut-in-header", "truncated-jpeg", "truncated-png", "garbage-png"],
)
def test_corrupt_inputs_are_invalid_image(data: bytes, needle: str) -> None:
    with pytest.raises(InvalidImage) as err:
        decode_image(data, **LIMITS)
    assert not isinstance(err.value, ImageTooLarge)
    assert needle in err.value.message


def test_byte_limit() -> None:
    data = zoo.png(64, 64)
    with pytest.raises(ImageTooLarge, match="bytes"):
        decode_image(data, max_bytes=len(data) - 1, max_pixels=10**9)
    assert decode_image(data, max_bytes=len(data), max_pixels=10**9).size == (64, 64)


@pytest.mark.parametrize("side", [50_000, 20_000])
def test_decompression_bomb_header_is_refused_before_decoding(side: int) -> None:
    # 50k x 50k exceeds PIL's own bomb limit too; 20k x 20k = 400 Mpx only exceeds ours.
    data = zoo.png_bomb_header(side, side)
    start = time.perf_counter()
    with pytest.raises(ImageTooLarge, match="pixels"):
        decode_image(data, **LIMITS)
    assert time.perf_counter() - start < 0.5  # nothing was decoded or allocated


def test_pixel_limit_is_ours_not_pils() -> None:
    data = zoo.png(100, 100)
    with pytest.raises(ImageTooLarge, match="10000 pixels"):
        decode_image(data, max_bytes=10**7, max_pixels=9_999)
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS > 9_999


def test_cmyk_jpeg_becomes_rgb() -> None:
    img = decode_image(zoo.cmyk_jpeg(), **LIMITS)
    r, g, b = px(img, (8, 8))
    assert img.mode == "RGB" and r > 220 and g < 40 and b < 40


def test_16bit_png_is_scaled_not_clipped() -> None:
    img = decode_image(zoo.png16(32768), **LIMITS)
    assert img.mode == "RGB"
    assert px(img, (0, 0)) == (128, 128, 128)


def test_palette_transparency_composited_on_white() -> None:
    img = decode_image(zoo.palette_with_transparency(), **LIMITS)
    assert img.mode == "RGB"
    assert px(img, (1, 1)) == (255, 0, 0) and px(img, (6, 6)) == (255, 255, 255)


def test_alpha_composited_on_white() -> None:
    img = decode_image(zoo.rgba_half_transparent(), **LIMITS)
    assert px(img, (1, 1)) == (0, 0, 255) and px(img, (6, 6)) == (255, 255, 255)


def test_la_becomes_rgb() -> None:
    img = decode_image(zoo.la_image(), **LIMITS)
    assert img.mode == "RGB" and px(img, (0, 0)) == (100, 100, 100)


def test_animated_gif_first_frame() -> None:
    img = decode_image(zoo.animated_gif(), **LIMITS)
    r, _, b = px(img, (4, 4))
    assert img.mode == "RGB" and r > 200 and b < 50


def test_exif_orientation_applied() -> None:
    img = decode_image(zoo.exif_rotated_jpeg(), **LIMITS)
    assert img.size == (10, 20)


def test_unsupported_format_refused() -> None:
    # An ICO file decodes with PIL but is not a format we open.
    data = zoo.encode(Image.new("RGB", (16, 16)), "ICO")
    with pytest.raises(InvalidImage, match="not a recognised image"):
        decode_image(data, **LIMITS)
