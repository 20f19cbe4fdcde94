"""``GET /documents/{id}`` and ``GET /images/{id}``: the file comes from the index record."""

from __future__ import annotations

import asyncio
import io
import mimetypes
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response
from PIL import Image

from clipsearch.documents import DOC_ID_PATTERN, ImageDocument
from clipsearch.errors import NotFound
from clipsearch.http_errors import error_responses
from services.api.routes.search import image_url
from services.api.schemas import DocumentOut
from services.api.state import ApiState, get_state

router = APIRouter(tags=["documents"], responses=error_responses(401, 404, 422, 502, 503))

DocIdParam = Annotated[str, PathParam(pattern=DOC_ID_PATTERN, description="Document id")]


async def _document(doc_id: str, state: ApiState) -> ImageDocument:
    doc = await state.index.get(doc_id)
    if doc is None:
        raise NotFound(f"no document with id {doc_id!r}")
    return doc


@router.get("/documents/{doc_id}", response_model=DocumentOut)
async def get_document(doc_id: DocIdParam, state: ApiState = Depends(get_state)) -> DocumentOut:
    doc = await _document(doc_id, state)
    return DocumentOut(id=doc.id, captions=doc.captions, dataset=doc.dataset,
                       category=doc.category, split=doc.split, model_id=doc.model_id,
                       image_url=image_url(doc.id))


def _thumbnail(path: Path, size: int) -> bytes:
    with Image.open(path) as src:
        src.draft("RGB", (size, size))
        img = src.convert("RGB")
    img.thumbnail((size, size))
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=85)
    return out.getvalue()


@router.get("/images/{doc_id}", response_class=FileResponse,
            responses={200: {"content": {"image/*": {}}}})
async def get_image(
    doc_id: DocIdParam,
    size: Annotated[int | None, Query(ge=16, le=1024, description="Thumbnail edge")] = None,
    state: ApiState = Depends(get_state),
) -> Response:
    doc = await _document(doc_id, state)
    uri = doc.image_uri
    if not uri or "://" in uri:
        raise NotFound(f"document {doc_id!r} has no local image file")
    path = Path(uri)
    if not path.is_file():
        raise NotFound(f"the image file of {doc_id!r} is missing")
    headers = {"Cache-Control": "public, max-age=3600"}
    if size is not None:
        try:
            data = await asyncio.to_thread(_thumbnail, path, size)
        except (OSError, Image.DecompressionBombError) as exc:
            raise NotFound(f"the image file of {doc_id!r} cannot be read") from exc
        return Response(data, media_type="image/jpeg", headers=headers)
    media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media, headers=headers)
