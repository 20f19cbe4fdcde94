"""Image bytes from what HTTP clients send: base64 strings (or data URLs) and file uploads,
within a byte limit. Used by the encoder service and the search gateway."""

from __future__ import annotations

import base64
import binascii

from starlette.datastructures import UploadFile

from clipsearch.errors import ImageTooLarge, InvalidImage

# Room for the other form or JSON fields and the framing next to the images of a request.
FORM_OVERHEAD = 64 * 1024


def base64_body_limit(images: int, max_image_bytes: int) -> int:
    """The largest request body that carries ``images`` base64 images of at most
    ``max_image_bytes`` each (base64 turns 3 bytes into 4; 4 KiB of framing per image)."""
    return images * (max_image_bytes * 4 // 3 + 4096) + FORM_OVERHEAD


def decode_base64_image(text: str, max_bytes: int, *, name: str = "image") -> bytes:
    """Bytes of a base64 image (a ``data:...;base64,`` URL is accepted too).

    ``ImageTooLarge`` over ``max_bytes`` (checked before decoding, from the text's length);
    ``InvalidImage`` for text that is not base64 or decodes to nothing."""
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    if len(text) * 3 // 4 > max_bytes + 3:
        raise ImageTooLarge(f"{name} is larger than the limit of {max_bytes} bytes")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidImage(f"{name} is not valid base64", reason="invalid_base64") from exc
    if len(data) > max_bytes:
        raise ImageTooLarge(f"{name} is larger than the limit of {max_bytes} bytes")
    if not data:
        raise InvalidImage(f"{name} is empty (0 bytes)", reason="empty_image")
    return data


async def read_upload(file: UploadFile, max_bytes: int, *, name: str = "uploaded image") -> bytes:
    """An uploaded file's bytes, reading at most one byte past ``max_bytes``."""
    data = await file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ImageTooLarge(f"{name} is larger than the limit of {max_bytes} bytes")
    if not data:
        raise InvalidImage(f"{name} is empty (0 bytes)", reason="empty_image")
    return data
