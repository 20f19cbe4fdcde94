"""Reading image uploads for ``POST /embed/image``: multipart files or JSON base64, with limits."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from clipsearch.encoder_api import ImageEmbedRequest
from clipsearch.errors import ClipsearchError, ImageTooLarge, InvalidImage, InvalidRequest
from clipsearch.http_errors import error_response
from clipsearch.settings import Settings

MULTIPART = "multipart/form-data"
JSON = "application/json"
FIELD = "files"

IMAGE_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            MULTIPART: {"schema": {
                "type": "object", "required": [FIELD],
                "properties": {FIELD: {"type": "array",
                                       "items": {"type": "string", "format": "binary"}}},
            }},
            JSON: {"schema": ImageEmbedRequest.model_json_schema()},
        },
    }
}


class RequestTooLarge(ClipsearchError):
    """The request breaks a size or count limit (413)."""

    reason = "too_large"

    def response(self) -> JSONResponse:
        return error_response(413, self.reason, self.message)


def max_request_bytes(settings: Settings) -> int:
    """The largest body we read: every image at its limit, base64-inflated, plus slack."""
    per_image = settings.max_image_bytes * 4 // 3 + 4096
    return settings.max_images_per_request * per_image + 64 * 1024


def check_content_length(header: str | None, settings: Settings) -> None:
    if header is None or not header.isdigit():
        return
    limit = max_request_bytes(settings)
    if int(header) > limit:
        raise RequestTooLarge(f"request body is {header} bytes; the limit is {limit} bytes")


def _check_count(n: int, settings: Settings) -> None:
    if n == 0:
        raise InvalidRequest(f"no images: send one or more multipart fields named {FIELD!r} "
                             "or JSON {\"images\": [base64, ...]}", reason="no_images")
    if n > settings.max_images_per_request:
        raise RequestTooLarge(f"{n} images in one request; the limit is "
                              f"{settings.max_images_per_request}", reason="too_many_images")


async def _read_multipart(request: Request, settings: Settings) -> list[bytes]:
    try:
        form = await request.form(max_files=settings.max_images_per_request, max_fields=16)
    except HTTPException as exc:
        if "Too many files" in str(exc.detail):
            raise RequestTooLarge(str(exc.detail), reason="too_many_images") from exc
        raise InvalidRequest(f"malformed multipart body: {exc.detail}") from exc
    try:
        parts = form.getlist(FIELD)
        files = [p for p in parts if isinstance(p, UploadFile)]
        if len(files) != len(parts):
            raise InvalidRequest(f"multipart field {FIELD!r} must carry files, not text")
        _check_count(len(files), settings)
        out = []
        for i, f in enumerate(files):
            data = await f.read(settings.max_image_bytes + 1)
            if len(data) > settings.max_image_bytes:
                raise ImageTooLarge(f"image {i} is larger than the limit of "
                                    f"{settings.max_image_bytes} bytes")
            out.append(data)
        return out
    finally:
        await form.close()


def _b64(i: int, text: str, max_bytes: int) -> bytes:
    if text.startswith("data:") and "," in text:  # a data URL: data:image/png;base64,....
        text = text.split(",", 1)[1]
    if len(text) * 3 // 4 > max_bytes + 3:
        raise ImageTooLarge(f"image {i} is larger than the limit of {max_bytes} bytes")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidImage(f"image {i} is not valid base64: {exc}",
                           reason="invalid_base64") from exc
    if len(data) > max_bytes:
        raise ImageTooLarge(f"image {i} is larger than the limit of {max_bytes} bytes")
    return data


async def _read_json(request: Request, settings: Settings) -> list[bytes]:
    try:
        body = ImageEmbedRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc
    _check_count(len(body.images), settings)
    return [_b64(i, s, settings.max_image_bytes) for i, s in enumerate(body.images)]


async def read_images(request: Request, settings: Settings) -> list[bytes]:
    """The uploaded image files' bytes, in order, within the settings' limits."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == MULTIPART:
        return await _read_multipart(request, settings)
    if ctype == JSON:
        return await _read_json(request, settings)
    raise HTTPException(415, f"unsupported content type {ctype or '(none)'!r}: send "
                             f"{MULTIPART} with {FIELD!r} files or {JSON} with base64 images")
