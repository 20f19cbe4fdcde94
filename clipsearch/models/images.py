"""Safe image decoding: untrusted bytes in, an RGB ``PIL.Image`` out, or a clear error.

Limits are checked before any pixel is decoded: the byte size first, then the pixel count
from the header (decompression bombs). PIL's global ``MAX_IMAGE_PIXELS`` is left alone and is
never the only guard. Oddities are converted rather than refused: EXIF orientation, CMYK,
16-bit and float greyscale, alpha and palette transparency (composited on white), animated
files (first frame).

Large images are never held at full size longer than the decoder needs (issue 16): given the
size the caller will resize to (``target_for``), a JPEG is decoded at a reduced DCT scale
(``Image.draft``) and any other format is box-reduced (``Image.reduce``) right after decoding,
in both cases to no less than twice the target, before mode conversion and EXIF rotation.
Images under four times the target are decoded exactly as before, so preprocessing of
ordinary images is unchanged. ``request_pixels`` checks a per-request pixel budget from the
headers alone.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from clipsearch.errors import ImageTooLarge, InvalidImage

# Raster formats seen in captioned image collections (JPEG covers MPO); every other PIL
# plugin stays closed.
ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "PPM")
WHITE = (255, 255, 255)
ORIENTATION = 0x0112
# EXIF orientation -> the transpose that undoes it (what ImageOps.exif_transpose applies).
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
              6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}
REDUCE_FROM = 4  # reduce only images at least this many times the target (per side)
KEEP_AT_LEAST = 2  # ... and never below this many times the target
TargetFor = Callable[[int, int], tuple[int, int]]


def _bomb(max_pixels: int) -> ImageTooLarge:
    """PIL's own bomb guard fired (its message quotes PIL's limit): quote ours."""
    return ImageTooLarge(f"image has too many pixels; the limit is {max_pixels}")


def _open(data: bytes, max_bytes: int, max_pixels: int) -> Image.Image:
    if not data:
        raise InvalidImage("image is empty (0 bytes)", reason="empty_image")
    if len(data) > max_bytes:
        raise ImageTooLarge(f"image is {len(data)} bytes; the limit is {max_bytes} bytes")
    try:
        return Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise _bomb(max_pixels) from exc
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


def header_pixels(data: bytes, *, max_bytes: int, max_pixels: int) -> int:
    """Width x height from the header (nothing decoded); the usual errors for bad images."""
    img = _open(data, max_bytes, max_pixels)
    try:
        _check_pixels(img, max_pixels)
        return int(img.width * img.height)
    finally:
        img.close()


def request_pixels(images: Sequence[bytes], *, max_bytes: int, max_pixels: int,
                   budget: int) -> list[int]:
    """Each image's pixel count (headers only); ``ImageTooLarge`` when together they pass
    the per-request ``budget``."""
    counts = []
    for i, data in enumerate(images):
        try:
            counts.append(header_pixels(data, max_bytes=max_bytes, max_pixels=max_pixels))
        except InvalidImage as exc:
            raise type(exc)(f"image {i}: {exc.message}", reason=exc.reason) from exc
    if sum(counts) > budget:
        raise ImageTooLarge(f"the {len(images)} images of this request have {sum(counts)} "
                            f"pixels together; the limit is {budget} per request")
    return counts


def _reduction(size: tuple[int, int], target_for: TargetFor | None) -> int:
    """The integer factor to shrink an image of ``size`` by (1: keep it), so that each side
    stays at least ``KEEP_AT_LEAST`` times the larger side of the target."""
    if target_for is None:
        return 1
    tw, th = target_for(*size)
    side = max(tw, th, 1)  # either orientation (EXIF rotation comes later)
    short = min(size)
    if short < REDUCE_FROM * side:
        return 1
    return max(1, short // (KEEP_AT_LEAST * side))


def _shrunk(img: Image.Image, factor: int) -> Image.Image:
    if factor <= 1:
        return img
    try:
        return img.reduce(factor)
    except ValueError:  # a mode reduce() lacks (e.g. palette): convert the small result
        return img


def _oriented(img: Image.Image, orientation: int) -> Image.Image:
    method = _TRANSPOSE.get(orientation)
    return img.transpose(method) if method is not None else img


def decode_image(data: bytes, *, max_bytes: int, max_pixels: int,
                 target_for: TargetFor | None = None) -> Image.Image:
    """Decode untrusted image bytes to an RGB image, or raise InvalidImage / ImageTooLarge.

    ``target_for(width, height)``: the size the caller resizes to; when given, a large image
    is decoded or reduced to at least twice that size (see the module notes)."""
    img = _open(data, max_bytes, max_pixels)
    _check_pixels(img, max_pixels)
    fmt = img.format or "image"
    try:
        img.seek(0)  # animated files: the first frame
        factor = _reduction(img.size, target_for)
        if factor > 1 and img.format == "JPEG":
            tw, th = target_for(*img.size) if target_for else img.size
            side = KEEP_AT_LEAST * max(tw, th)
            img.draft(img.mode, (side, side))  # decodes at 1/2, 1/4 or 1/8 scale
        img.load()
        orientation = int(img.getexif().get(ORIENTATION, 1) or 1)
        img = _shrunk(img, _reduction(img.size, target_for))
        img = _oriented(img, orientation)
        _check_pixels(img, max_pixels)
        return to_rgb(img)
    except (ImageTooLarge, InvalidImage):
        raise
    except Image.DecompressionBombError as exc:
        raise _bomb(max_pixels) from exc
    except (OSError, SyntaxError, ValueError, EOFError, TypeError) as exc:
        raise InvalidImage(f"{fmt} data is truncated or corrupt: {exc}") from exc
