"""Safe image decoding: untrusted bytes in, an RGB ``PIL.Image`` out, or a clear error.

Limits are checked before any pixel is decoded: the byte size first, then the pixel count
from the header (decompression bombs). PIL's global ``MAX_IMAGE_PIXELS`` is left alone and is
never the only guard. Oddities are converted rather than refused: EXIF orientation, CMYK,
16-bit and float greyscale, alpha and palette transparency (composited on white), animated
files (first frame).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from clipsearch.errors import ImageTooLarge, InvalidImage

# Raster formats seen in captioned image collections (JPEG covers MPO); every other PIL
# plugin stays closed.
ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "PPM")
WHITE = (255, 255, 255)


def _open(data: bytes, max_bytes: int) -> Image.Image:
    if not data:
        raise InvalidImage("image is empty (0 bytes)", reason="empty_image")
    if len(data) > max_bytes:
        raise ImageTooLarge(f"image is {len(data)} bytes; the limit is {max_bytes} bytes")
    try:
        return Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"image has too many pixels: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise InvalidImage(
            "not a recognised image (supported: " + ", ".join(ALLOWED_FORMATS) + ")",
            reason="invalid_image",
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImage(f"image header is corrupt: {exc}") from exc


def _check_pixels(img: Image.Image, max_pixels: int) -> None:
    width, height = img.size
    if width <= 0 or height <= 0:
        raise InvalidImage(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
        )


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """16-bit / 32-bit int / float greyscale scaled (not clipped) to 8 bits."""
    arr = np.asarray(img)
    if img.mode == "F":
        arr = arr.astype(np.float64)
        arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
        peak = float(arr.max()) if arr.size else 0.0
        scaled = arr * 255.0 if peak <= 1.0 else arr * (255.0 / peak)
    elif img.mode.startswith("I;16") or int(arr.max(initial=0)) > 255:
        scaled = arr.astype(np.float64) / 257.0
    else:
        scaled = arr.astype(np.float64)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        img.mode in ("P", "L", "RGB") and "transparency" in img.info
    )


def to_rgb(img: Image.Image) -> Image.Image:
    """Any decoded PIL image as 8-bit RGB; transparency is composited on white."""
    if img.mode == "RGB" and "transparency" not in img.info:
        return img
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _high_depth_to_l(img).convert("RGB")
    if _has_alpha(img):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def decode_image(data: bytes, *, max_bytes: int, max_pixels: int) -> Image.Image:
    """Decode untrusted image bytes to an RGB image, or raise InvalidImage / ImageTooLarge."""
    img = _open(data, max_bytes)
    _check_pixels(img, max_pixels)
    fmt = img.format or "image"
    try:
        img.seek(0)  # animated files: the first frame
        img.load()
        img = ImageOps.exif_transpose(img)
        _check_pixels(img, max_pixels)
        return to_rgb(img)
    except (ImageTooLarge, InvalidImage):
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"image has too many pixels: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError, TypeError) as exc:
        raise InvalidImage(f"{fmt} data is truncated or corrupt: {exc}") from exc
