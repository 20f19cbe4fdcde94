"""Image bytes for the encoder tests: ordinary, odd and hostile files, made with PIL."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def noise_image(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def jpeg(w: int = 64, h: int = 48, seed: int = 0) -> bytes:
    return encode(noise_image(w, h, seed), "JPEG", quality=90)


def png(w: int = 64, h: int = 48, seed: int = 0) -> bytes:
    return encode(noise_image(w, h, seed), "PNG")


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))


def png_bomb_header(width: int, height: int) -> bytes:
    """A valid PNG header claiming ``width`` x ``height`` pixels, with almost no data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)
            + _chunk(b"IEND", b""))


def cmyk_jpeg() -> bytes:
    return encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95)  # red


def png16(value: int = 32768) -> bytes:
    arr = np.full((8, 8), value, dtype=np.uint16)
    return encode(Image.fromarray(arr), "PNG")


def palette_with_transparency() -> bytes:
    img = Image.new("P", (8, 8), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * (254 * 3))
    img.paste(1, (0, 0, 4, 8))  # left half red, right half index 0 = transparent
    img.info["transparency"] = 0
    return encode(img, "PNG", transparency=0)


def rgba_half_transparent() -> bytes:
    img = Image.new("RGBA", (8, 8), (0, 0, 255, 0))
    img.paste((0, 0, 255, 255), (0, 0, 4, 8))  # left opaque blue, right fully transparent
    return encode(img, "PNG")


def la_image() -> bytes:
    return encode(Image.new("LA", (8, 8), (100, 255)), "PNG")


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50,
                  loop=0)


def exif_rotated_jpeg() -> bytes:
    """20 wide x 10 high, with EXIF orientation 6 (display rotated 90° clockwise)."""
    img = noise_image(20, 10)
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(img, "JPEG", exif=exif.tobytes())
