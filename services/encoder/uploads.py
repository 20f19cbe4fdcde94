"""Reading image uploads for ``POST /embed/image``: multipart files or JSON base64, with limits."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from clipsearch.encoder_api import ImageEmbedRequest
from clipsearch.errors import ClipsearchError, InvalidRequest
from clipsearch.http_errors import error_response
from clipsearch.image_payloads import base64_body_limit, decode_base64_image, read_upload
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
    return base64_body_limit(settings.max_images_per_request, settings.max_image_bytes)


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
        if exc.status_code == 413:  # clipsearch.body_limit: the streamed body passed the limit
            raise
        if "Too many files" in str(exc.detail):
            raise RequestTooLarge(str(exc.detail), reason="too_many_images") from exc
        raise InvalidRequest(f"malformed multipart body: {exc.detail}") from exc
    try:
        parts = form.getlist(FIELD)
        files = [p for p in parts if isinstance(p, UploadFile)]
        if len(files) != len(parts):
            raise InvalidRequest(f"multipart field {FIELD!r} must carry files, not text")
        _check_count(len(files), settings)
        return [await read_upload(f, settings.max_image_bytes, name=f"image {i}")
                for i, f in enumerate(files)]
    finally:
        await form.close()


async def _read_json(request: Request, settings: Settings) -> list[bytes]:
    try:
        body = ImageEmbedRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc
    _check_count(len(body.images), settings)
    return [decode_base64_image(s, settings.max_image_bytes, name=f"image {i}")
            for i, s in enumerate(body.images)]


async def read_images(request: Request, settings: Settings) -> list[bytes]:
    """The uploaded image files' bytes, in order, within the settings' limits."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == MULTIPART:
        return await _read_multipart(request, settings)
    if ctype == JSON:
        return await _read_json(request, settings)
    raise HTTPException(415, f"unsupported content type {ctype or '(none)'!r}: send "
                             f"{MULTIPART} with {FIELD!r} files or {JSON} with base64 images")
