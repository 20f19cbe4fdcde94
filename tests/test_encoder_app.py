"""The encoder service over HTTP: routes, limits, error shape, concurrency."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from clipsearch.encoder_client import RemoteEmbedder
from clipsearch.errors import ImageTooLarge, InvalidImage
from clipsearch.models.model import ClipEncoder
from clipsearch.settings import Settings
from services.encoder.app import create_app
from tests import encoder_images as zoo


def _settings(**kw: Any) -> Settings:
    return Settings(max_texts_per_request=4, max_images_per_request=3,
                    max_image_bytes=64 * 1024, max_image_pixels=1_000_000, **kw)


@pytest.fixture(scope="module")
def encoder(tiny_clip_dir: Path) -> ClipEncoder:
    return ClipEncoder.load(str(tiny_clip_dir))


@pytest.fixture()
async def client(encoder: ClipEncoder) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(_settings(), encoder=encoder)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://enc") as c:
        yield c


def _files(*datas: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (f"f{i}.png", d, "image/png")) for i, d in enumerate(datas)]


def _error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["status"] == status and err["message"]
    return dict(err)


async def test_info_and_health(client: httpx.AsyncClient, encoder: ClipEncoder) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    info = (await client.get("/info")).json()
    assert info == {"model": encoder.model_id, "dim": 512, "runtime": "torch",
                    "dtype": "float32", "device": "cpu", "max_text_tokens": 77,
                    "image_size": 224, "space": encoder.space_id,
                    "fingerprint": encoder.identity.fingerprint if encoder.identity else None}
    assert info["space"] and len(info["space"]) == 64  # the gateway compares it with the index


async def test_embed_text(client: httpx.AsyncClient, encoder: ClipEncoder) -> None:
    r = await client.post("/embed/text", json={"texts": ["a river", "an airport"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == encoder.model_id and body["dim"] == 512
    got = np.asarray(body["embeddings"], dtype=np.float32)
    assert np.allclose(got, encoder.embed_texts(["a river", "an airport"]).vectors, atol=1e-6)


async def test_embed_image_multipart_and_base64_agree(client: httpx.AsyncClient,
                                                      encoder: ClipEncoder) -> None:
    datas = [zoo.png(40, 30, seed=1), zoo.jpeg(50, 70, seed=2)]
    r1 = await client.post("/embed/image", files=_files(*datas))
    assert r1.status_code == 200, r1.text
    b64 = [base64.b64encode(d).decode() for d in datas]
    b64[1] = "data:image/jpeg;base64," + b64[1]
    r2 = await client.post("/embed/image", json={"images": b64})
    assert r2.status_code == 200, r2.text
    v1 = np.asarray(r1.json()["embeddings"], dtype=np.float32)
    v2 = np.asarray(r2.json()["embeddings"], dtype=np.float32)
    assert v1.shape == (2, 512) and np.allclose(v1, v2)
    limits = {"max_bytes": 1 << 20, "max_pixels": 10**7}
    assert np.allclose(v1, encoder.embed_images(datas, **limits).vectors, atol=1e-6)


async def test_text_limits_and_validation(client: httpx.AsyncClient) -> None:
    err = _error(await client.post("/embed/text", json={"texts": ["x"] * 5}), 413)
    assert err["reason"] == "too_many_texts"
    _error(await client.post("/embed/text", json={"texts": []}), 422)
    _error(await client.post("/embed/text", json={"text": "x"}), 422)
    _error(await client.post("/embed/text", content=b"{not json",
                             headers={"content-type": "application/json"}), 422)


async def test_image_errors(client: httpx.AsyncClient) -> None:
    err = _error(await client.post("/embed/image", files=_files(zoo.png(), b"not an image")),
                 422)
    assert err["reason"] == "invalid_image" and err["message"].startswith("image 1:")
    err = _error(await client.post("/embed/image", files=_files(zoo.jpeg(128, 128)[:6000])), 422)
    assert "truncated" in err["message"]
    _error(await client.post("/embed/image", files=_files(b"")), 422)
    big = zoo.png(200, 200)  # ~120 kB of noise > 64 kB
    assert _error(await client.post("/embed/image", files=_files(big)), 413)["reason"] \
        == "image_too_large"
    b64 = base64.b64encode(big).decode()
    _error(await client.post("/embed/image", json={"images": [b64]}), 413)
    bomb = _error(await client.post("/embed/image", files=_files(zoo.png_bomb_header(5000, 5000))),
                  413)
    assert "pixels" in bomb["message"]
    many = _error(await client.post("/embed/image", files=_files(*[zoo.png(8, 8)] * 4)), 413)
    assert many["reason"] == "too_many_images"
    _error(await client.post("/embed/image", json={"images": ["%%% not base64"]}), 422)
    _error(await client.post("/embed/image", json={"images": []}), 422)
    _error(await client.post("/embed/image", data={"other": "x"},
                             files=[("other", ("a", b"x", "text/plain"))]), 422)
    _error(await client.post("/embed/image", content=b"raw", headers={"content-type":
                                                                       "image/png"}), 415)


async def test_body_size_checked_before_reading(client: httpx.AsyncClient) -> None:
    r = await client.post("/embed/text", content=b"x",
                          headers={"content-type": "application/json",
                                   "content-length": str(10**10)})
    assert _error(r, 413)["reason"] == "too_large"


async def test_concurrent_requests_match_sequential(client: httpx.AsyncClient) -> None:
    texts = [[f"a photo of {w}"] for w in ("a lake", "a forest", "a runway", "houses", "sand")]
    images = [zoo.png(24 + i, 24, seed=i) for i in range(3)]

    async def text(t: list[str]) -> list[list[float]]:
        r = await client.post("/embed/text", json={"texts": t})
        assert r.status_code == 200, r.text
        return list(r.json()["embeddings"])

    async def image(d: bytes) -> list[list[float]]:
        r = await client.post("/embed/image", files=_files(d))
        assert r.status_code == 200, r.text
        return list(r.json()["embeddings"])

    sequential = [await text(t) for t in texts] + [await image(d) for d in images]
    concurrent = await asyncio.gather(*[text(t) for t in texts], *[image(d) for d in images])
    for a, b in zip(sequential, concurrent, strict=True):
        assert np.allclose(a, b, atol=1e-6)


async def test_remote_embedder_speaks_the_service(encoder: ClipEncoder) -> None:
    app = create_app(_settings(), encoder=encoder)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://enc")
    remote = RemoteEmbedder("http://enc", client=http)
    info = await remote.connect()
    assert info.model == encoder.model_id and remote.dim == 512
    v = await remote.embed_texts(["a lake"])
    assert np.allclose(v.vectors, encoder.embed_texts(["a lake"]).vectors, atol=1e-6)
    with pytest.raises(InvalidImage):
        await remote.embed_images([b"nope"])
    with pytest.raises(ImageTooLarge):
        await remote.embed_images([zoo.png(200, 200)])
    await http.aclose()


def test_lifespan_loads_the_model_from_settings(tiny_clip_dir: Path, tmp_path: Path) -> None:
    app = create_app(Settings(model=str(tiny_clip_dir), data_dir=tmp_path, runtime="onnx"))
    with TestClient(app) as c:
        info = c.get("/info").json()
        assert info["model"] == str(tiny_clip_dir) and info["runtime"] == "onnx"
        assert list((tmp_path / "cache" / "onnx").rglob("vision.onnx"))
        assert c.post("/embed/text", json={"texts": ["x"]}).status_code == 200
    openapi = app.openapi()["paths"]["/embed/image"]["post"]["requestBody"]["content"]
    assert set(openapi) == {"multipart/form-data", "application/json"}


async def test_metrics_per_app_registry(client: httpx.AsyncClient, encoder: ClipEncoder) -> None:
    await client.post("/embed/text", json={"texts": ["a lake", "a lake"]})
    await client.post("/embed/image", files=_files(zoo.png(16, 16)))
    await client.post("/embed/text", json={"texts": []})
    text = (await client.get("/metrics")).text
    assert 'clipsearch_encoder_requests_total{route="/embed/text",status="200"} 1.0' in text
    assert 'clipsearch_encoder_requests_total{route="/embed/text",status="422"} 1.0' in text
    assert 'clipsearch_encoder_batch_items_count{kind="pixels"} 1.0' in text
    assert 'clipsearch_encoder_items_total{kind="text"} 2.0' in text
    assert "clipsearch_encoder_request_seconds_bucket" in text
    other = create_app(_settings(), encoder=encoder)  # a second app starts from zero
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=other),
                                 base_url="http://enc") as c2:
        assert "/embed/text" not in (await c2.get("/metrics")).text
