"""Fault injection (issue 16), hostile payloads: chunked bodies past the limit on every body
route of both services, and the API key compared in constant time. (Big-image memory: see
``test_faults_images.py``.)

The apps run in-process over ``httpx.ASGITransport``, which hands the body to the app chunk
by chunk as the app asks for it, so the test sees how much of the body the server pulled.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from clipsearch.image_payloads import FORM_OVERHEAD, base64_body_limit
from clipsearch.settings import Settings
from services.api.app import create_app
from services.api.schemas import MAX_QUERY_PARTS
from tests.api_fakes import FakeEmbedder, RecordingIndex, doc

CHUNK = 64 * 1024
MAX_IMAGE_BYTES = 4096


class Body:
    """A chunked body of ``total`` bytes that counts what the server pulled."""

    def __init__(self, total: int, head: bytes = b"") -> None:
        self.total = total
        self.head = head
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        first = self.head + b"x" * (CHUNK - len(self.head))
        while self.pulled < self.total:
            chunk = first if self.pulled == 0 else b"x" * CHUNK
            self.pulled += len(chunk)
            yield chunk


async def _post(app: FastAPI, path: str, body: Body, content_type: str,
                headers: dict[str, str] | None = None) -> httpx.Response:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post(path, content=body,
                                     headers={"content-type": content_type, **(headers or {})})


def _gateway(tmp_path: Path, **kw: Any) -> FastAPI:
    return create_app(Settings(data_dir=tmp_path, max_image_bytes=MAX_IMAGE_BYTES, **kw),
                      index=RecordingIndex([doc(i) for i in range(3)]), embedder=FakeEmbedder())


JSON_LIMIT = base64_body_limit(MAX_QUERY_PARTS, MAX_IMAGE_BYTES)
FORM_LIMIT = MAX_IMAGE_BYTES + FORM_OVERHEAD
MULTIPART = "multipart/form-data; boundary=b0undary"
FORM_HEAD = (b'--b0undary\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
             b"Content-Type: image/png\r\n\r\n")


@pytest.mark.parametrize(("path", "content_type", "limit", "head"), [
    ("/search", "application/json", JSON_LIMIT, b'{"q": "'),
    ("/search/image", MULTIPART, FORM_LIMIT, FORM_HEAD),
    ("/locate", "application/json", JSON_LIMIT, b'{"image": "'),
    ("/locate", MULTIPART, FORM_LIMIT, FORM_HEAD),
])
async def test_gateway_stops_reading_a_chunked_body_at_the_limit(
        tmp_path: Path, path: str, content_type: str, limit: int, head: bytes) -> None:
    body = Body(100 * limit, head)
    r = await _post(_gateway(tmp_path), path, body, content_type)
    assert r.status_code == 413, r.text
    err = r.json()["error"]
    assert err["reason"] == "image_too_large" and str(limit) in err["message"]
    assert body.pulled <= limit + CHUNK, (body.pulled, limit)


async def test_gateway_body_under_the_limit_still_works(tmp_path: Path) -> None:
    class Small(Body):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b'{"q": "river", '
            yield b'"mode": "lexical"}'

    r = await _post(_gateway(tmp_path), "/search", Small(0), "application/json")
    assert r.status_code == 200, r.text


async def test_declared_length_over_the_limit_is_refused_before_reading(tmp_path: Path) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_gateway(tmp_path)),
                                 base_url="http://test") as client:
        r = await client.post("/search", content=b"{}",
                              headers={"content-type": "application/json",
                                       "content-length": str(JSON_LIMIT + 1)})
    assert r.status_code == 413 and str(JSON_LIMIT) in r.json()["error"]["message"]


async def test_api_key_guard_still_applies_and_uses_compare_digest(tmp_path: Path) -> None:
    app = _gateway(tmp_path, api_key="s3cret")
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=transport, base_url="http://test") as client:
        assert (await client.get("/search", params={"q": "a"})).status_code == 401
        assert (await client.get("/search", params={"q": "a"},
                                 headers={"x-api-key": "s3creT"})).status_code == 401
        assert (await client.get("/search", params={"q": "a", "mode": "lexical"},
                                 headers={"x-api-key": "s3cret"})).status_code == 200
    import inspect

    from services.api import middleware
    assert "compare_digest" in inspect.getsource(middleware.GatewayMiddleware)


@pytest.fixture(scope="module")
def encoder_app(tiny_clip_dir: Path) -> FastAPI:
    from clipsearch.models.model import ClipEncoder
    from services.encoder.app import create_app as create_encoder

    settings = Settings(model=str(tiny_clip_dir), runtime="torch",
                        max_image_bytes=MAX_IMAGE_BYTES, max_images_per_request=2)
    return create_encoder(settings, encoder=ClipEncoder.load(str(tiny_clip_dir)))


ENCODER_LIMIT = base64_body_limit(2, MAX_IMAGE_BYTES)
ENCODER_HEAD = (b'--b0undary\r\nContent-Disposition: form-data; name="files"; '
                b'filename="a.png"\r\nContent-Type: image/png\r\n\r\n')


@pytest.mark.parametrize(("path", "content_type", "head"), [
    ("/embed/text", "application/json", b'{"texts": ["'),
    ("/embed/image", "application/json", b'{"images": ["'),
    ("/embed/image", MULTIPART, ENCODER_HEAD),
])
async def test_encoder_stops_reading_a_chunked_body_at_the_limit(
        encoder_app: FastAPI, path: str, content_type: str, head: bytes) -> None:
    body = Body(50 * ENCODER_LIMIT, head)
    r = await _post(encoder_app, path, body, content_type)
    assert r.status_code == 413, r.text
    assert str(ENCODER_LIMIT) in r.json()["error"]["message"]
    assert body.pulled <= ENCODER_LIMIT + CHUNK, (body.pulled, ENCODER_LIMIT)
