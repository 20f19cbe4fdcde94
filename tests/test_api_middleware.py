"""The gateway's outer layer: body limits per content type, API key, CORS, metrics, timing."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from clipsearch.image_payloads import FORM_OVERHEAD
from clipsearch.settings import Settings
from services.api.app import create_app
from services.api.middleware import body_limit
from services.api.schemas import MAX_QUERY_PARTS
from tests.api_fakes import FakeEmbedder, RecordingIndex, doc
from tests.encoder_images import png

MAX_IMAGE = 300_000


def _client(tmp_path: Path, **settings: Any) -> TestClient:
    app = create_app(Settings(data_dir=tmp_path, **settings),
                     index=RecordingIndex([doc(i) for i in range(5)]), embedder=FakeEmbedder())
    return TestClient(app)


def _near_limit_png() -> bytes:
    """A noisy PNG a little under ``MAX_IMAGE`` (noise does not compress)."""
    data = png(310, 310, seed=1)
    assert MAX_IMAGE * 0.9 < len(data) <= MAX_IMAGE, len(data)
    return data


def test_body_limits() -> None:
    settings = Settings(max_image_bytes=MAX_IMAGE)
    assert body_limit("multipart/form-data; boundary=x", settings) == MAX_IMAGE + FORM_OVERHEAD
    json_limit = body_limit("application/json", settings)
    assert json_limit >= MAX_QUERY_PARTS * MAX_IMAGE * 4 // 3


def test_json_search_with_a_near_limit_base64_image_is_served(tmp_path: Path) -> None:
    """Base64 inflates an allowed image past the multipart limit: JSON has its own limit."""
    image = base64.b64encode(_near_limit_png()).decode()
    assert len(image) > MAX_IMAGE + FORM_OVERHEAD
    with _client(tmp_path, max_image_bytes=MAX_IMAGE) as c:
        r = c.post("/search", json={"parts": [{"image": image}], "mode": "vector"})
        assert r.status_code == 200, r.text
        assert r.json()["hits"]


def test_oversized_bodies_are_413_before_reading(tmp_path: Path) -> None:
    with _client(tmp_path, max_image_bytes=MAX_IMAGE) as c:
        huge = "A" * (body_limit("application/json", Settings(max_image_bytes=MAX_IMAGE)) + 1)
        r = c.post("/search", content=huge, headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["reason"] == "image_too_large"
        upload = b"\xff" * (MAX_IMAGE + FORM_OVERHEAD + 1)
        r = c.post("/search/image", files={"image": ("q.png", upload, "image/png")})
        assert r.status_code == 413
        metrics = c.get("/metrics").text
        assert 'route="unmatched",status="413"} 2.0' in metrics


def test_cors_preflight_and_refusals_carry_cors_headers(tmp_path: Path) -> None:
    origin = "https://search.example.org"
    with _client(tmp_path, api_key="s3cret", cors_origins=[origin]) as c:
        pre = c.options("/search", headers={"Origin": origin,
                                            "Access-Control-Request-Method": "GET",
                                            "Access-Control-Request-Headers": "x-api-key"})
        assert pre.status_code == 200  # a preflight carries no key and must not be refused
        assert pre.headers["access-control-allow-origin"] == origin
        refused = c.get("/search", params={"q": "x"}, headers={"Origin": origin})
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == origin
        ok = c.get("/search", params={"q": "x"}, headers={"Origin": origin,
                                                          "X-API-Key": "s3cret"})
        assert ok.status_code == 200


def test_every_response_is_timed_and_counted_by_route(tmp_path: Path) -> None:
    with _client(tmp_path) as c:
        for _ in range(2):
            r = c.get("/search", params={"q": "river"})
            assert float(r.headers["x-response-time-ms"]) >= 0
        assert c.get("/documents/nope:1").status_code == 404
        metrics = c.get("/metrics").text
        assert 'method="GET",route="/search",status="200"} 2.0' in metrics
        assert 'route="/documents/{doc_id}",status="404"} 1.0' in metrics
