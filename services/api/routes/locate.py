"""``POST /locate``: where in an image is the thing a text describes?

One endpoint, two bodies: JSON (``LocateRequest``: an indexed ``image_id`` or a base64
``image``) or multipart (an ``image`` file plus the ``LocateOptions`` as form fields; ``scales``
as ``2,3,4`` or repeated fields). ``Accept: image/png`` answers with the heatmap overlay itself
instead of JSON.
"""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from PIL import Image
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from clipsearch.embedder import Embedder
from clipsearch.errors import (
    BackendError,
    BackendUnavailable,
    ImageTooLarge,
    InvalidRequest,
    NotFound,
)
from clipsearch.image_payloads import decode_base64_image, read_upload
from clipsearch.models.images import decode_image
from clipsearch.models.patch_encoding import embed_patches, patch_size_for
from clipsearch.models.patch_heatmap import render_overlay
from clipsearch.models.patches import PatchScores, crop_patches, plan_grid, score_patches
from services.api.locate_schemas import (
    Box,
    LocateOptions,
    LocateRequest,
    LocateResponse,
    LocateTimings,
    ScaleScores,
)
from services.api.planner import prompt_for
from services.api.state import ApiState, get_state

router = APIRouter(tags=["locate"])

JSON = "application/json"
MULTIPART = "multipart/form-data"
PNG = "image/png"
_FORM_FIELDS = ("text", "scales", "temperature", "heatmap", "prompt")

_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            JSON: {"schema": LocateRequest.model_json_schema()},
            MULTIPART: {"schema": {
                "type": "object", "required": ["image", "text"],
                "properties": {
                    "image": {"type": "string", "format": "binary"},
                    "text": {"type": "string", "minLength": 1, "maxLength": 1000},
                    "scales": {"type": "string", "pattern": r"^\d(,\d){0,3}$",
                               "description": "comma-separated, e.g. 2,3,4"},
                    "temperature": {"type": "number", "exclusiveMinimum": 0, "maximum": 1000},
                    "heatmap": {"type": "boolean"},
                    "prompt": {"type": "boolean"},
                },
            }},
        },
    }
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {PNG: {}}, "description": "JSON scores, or the overlay with Accept: "
          "image/png"},
    404: {"description": "unknown image_id, or its image file is missing"},
    413: {"description": "image too large"},
    415: {"description": "body is neither JSON nor multipart"},
    422: {"description": "bad input (text, scales, image, too many patches)"},
    503: {"description": "the encoder is unavailable"},
}


# --------------------------------------------------------------------------- reading input


def _form_options(form: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    for key in form:
        if key not in (*_FORM_FIELDS, "image"):
            raise InvalidRequest(f"unknown form field {key!r}; known: image, "
                                 + ", ".join(_FORM_FIELDS), reason="unknown_field")
    for key in _FORM_FIELDS:
        values = [v for v in form.getlist(key) if isinstance(v, str)]
        if key == "scales" and values:
            raw[key] = [s.strip() for v in values for s in v.split(",") if s.strip()]
        elif values:
            raw[key] = values[-1]
    return raw


async def _read_multipart(request: Request, max_bytes: int) -> tuple[LocateOptions, bytes]:
    try:
        form = await request.form(max_files=1, max_fields=16)
    except HTTPException as exc:
        if exc.status_code == 413:  # clipsearch.body_limit: the streamed body passed the limit
            raise
        raise InvalidRequest(f"malformed multipart body: {exc.detail}") from exc
    try:
        try:
            options = LocateOptions.model_validate(_form_options(form))
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from exc
        image = form.get("image")
        if not isinstance(image, UploadFile):
            raise InvalidRequest("multipart body needs an 'image' file field",
                                 reason="no_image")
        return options, await read_upload(image, max_bytes)
    finally:
        await form.close()


def _read_file(path: Path, max_bytes: int) -> bytes:
    if path.stat().st_size > max_bytes:
        raise ImageTooLarge(f"the image file is larger than {max_bytes} bytes")
    return path.read_bytes()


async def _indexed_image(image_id: str, state: ApiState) -> tuple[bytes, str]:
    doc = await state.index.get(image_id)
    if doc is None:
        raise NotFound(f"no document with id {image_id!r}")
    uri = doc.image_uri
    if not uri or "://" in uri:
        raise NotFound(f"document {image_id!r} has no local image file")
    try:
        data = await asyncio.to_thread(_read_file, Path(uri), state.settings.max_image_bytes)
    except OSError as exc:
        raise NotFound(f"the image file of {image_id!r} is missing or unreadable") from exc
    return data, doc.dataset


# --------------------------------------------------------------------------- the work


def _box(scale: int, row: int, col: int, box: tuple[int, int, int, int], cosine: float,
         softmax: float) -> Box:
    return Box(x0=box[0], y0=box[1], x1=box[2], y1=box[3], scale=scale, row=row, col=col,
               cosine=round(cosine, 6), softmax=round(softmax, 6))


def _scales_out(scores: PatchScores) -> list[ScaleScores]:
    out = []
    for gs in scores.grids:
        g = gs.grid
        i = gs.best_index
        row, col = divmod(i, g.cols)
        out.append(ScaleScores(
            scale=g.scale, window=g.window, stride=g.stride, rows=g.rows, cols=g.cols,
            xs=list(g.xs), ys=list(g.ys),
            cosine=np.round(gs.cosine.astype(np.float64), 6).tolist(),
            softmax=np.round(gs.softmax.astype(np.float64), 6).tolist(),
            best=_box(g.scale, row, col, gs.box(i), float(gs.cosine[row, col]),
                      float(gs.softmax[row, col]))))
    return out


def _need_embedder(state: ApiState) -> Embedder:
    if state.embedder is None:
        raise BackendUnavailable("the encoder is not available: " +
                                 (state.embedder_error or "not configured"),
                                 reason="encoder_unavailable")
    return state.embedder


def _decode_and_crop(data: bytes, scales: list[int], max_bytes: int, max_pixels: int,
                     patch_px: int) -> tuple[Image.Image, Any, list[Image.Image]]:
    img = decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    grids = plan_grid(img.width, img.height, scales)
    return img, grids, crop_patches(img, grids, patch_px)


async def locate(options: LocateOptions, data: bytes, state: ApiState, *,
                 image_id: str | None = None, dataset: str | None = None,
                 want_png: bool = False) -> tuple[LocateResponse, bytes | None]:
    """Score every window of the image against the text; the PNG overlay when asked."""
    started = time.perf_counter()
    embedder = _need_embedder(state)
    s = state.settings
    img, grids, crops = await asyncio.to_thread(_decode_and_crop, data, options.scales,
                                                s.max_image_bytes, s.max_image_pixels,
                                                patch_size_for(embedder))
    t_decoded = time.perf_counter()
    text = options.text.strip()
    if options.prompt:
        text = prompt_for(text, [dataset] if dataset else [], s.prompt_templates)
    text_emb = await embedder.embed_texts([text])
    patch_vectors = await embed_patches(embedder, crops, batch=s.max_images_per_request)
    if text_emb.model_id != embedder.model_id:
        raise BackendError(f"text came from model {text_emb.model_id!r}, patches from "
                           f"{embedder.model_id!r}")
    t_encoded = time.perf_counter()
    scores = score_patches(patch_vectors, text_emb.vectors[0], grids, width=img.width,
                           height=img.height, temperature=options.temperature)
    png = None
    if options.heatmap or want_png:
        png = await asyncio.to_thread(render_overlay, img, scores)
    done = time.perf_counter()
    b = scores.best
    response = LocateResponse(
        image_id=image_id, text=options.text, encoded_text=text, model=embedder.model_id,
        width=img.width, height=img.height, patches=len(crops),
        temperature=options.temperature,
        best=_box(b.scale, b.row, b.col, b.box, b.cosine, b.softmax),
        scales=_scales_out(scores),
        heatmap_png=("data:image/png;base64," + base64.b64encode(png).decode())
        if png is not None and options.heatmap else None,
        timings_ms=LocateTimings(decode=round((t_decoded - started) * 1000, 3),
                                 encode=round((t_encoded - t_decoded) * 1000, 3),
                                 score=round((done - t_encoded) * 1000, 3),
                                 total=round((done - started) * 1000, 3)),
    )
    return response, png


def _wants_png(request: Request) -> bool:
    accept = request.headers.get("accept", "").lower()
    return PNG in accept and JSON not in accept


@router.post("/locate", response_model=LocateResponse, openapi_extra=_BODY_DOC,
             responses=_RESPONSES,
             summary="Find where a text appears inside an image (patch grid heatmap)")
async def locate_endpoint(request: Request, state: ApiState = Depends(get_state)) -> Any:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    max_bytes = state.settings.max_image_bytes
    image_id: str | None = None
    dataset: str | None = None
    if ctype == JSON:
        try:
            body = LocateRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from exc
        options: LocateOptions = body
        if body.image_id is not None:
            image_id = body.image_id
            data, dataset = await _indexed_image(body.image_id, state)
        else:
            data = decode_base64_image(body.image or "", max_bytes)
    elif ctype == MULTIPART:
        options, data = await _read_multipart(request, max_bytes)
    else:
        raise HTTPException(415, f"unsupported content type {ctype or '(none)'!r}: send "
                                 f"{JSON} (image_id or base64 image) or {MULTIPART} "
                                 "(image file + text)")
    want_png = _wants_png(request)
    response, png = await locate(options, data, state, image_id=image_id, dataset=dataset,
                                 want_png=want_png)
    if want_png and png is not None:
        return Response(png, media_type=PNG, headers={
            "X-Best-Box": f"{response.best.x0},{response.best.y0},{response.best.x1},"
                          f"{response.best.y1}"})
    return response
