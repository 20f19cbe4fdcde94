"""The gateway's own behaviour with stand-in dependencies: validation, errors, degradation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from clipsearch.settings import Settings
from services.api.app import create_app
from tests.api_fakes import FakeEmbedder, RecordingIndex, doc


def _client(tmp_path: Path, index: Any = None, embedder: Any = None, **settings: Any) -> TestClient:
    if index is None:
        index = RecordingIndex([doc(i) for i in range(5)])
    app = create_app(Settings(data_dir=tmp_path, **settings),
                     index=index,
                     embedder=embedder if embedder is not None else FakeEmbedder())
    return TestClient(app)


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[TestClient]:
    with _client(tmp_path) as c:
        yield c


def test_response_shape(client: TestClient) -> None:
    r = client.get("/search", params={"q": "a river", "mode": "hybrid", "limit": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["mode"] == "hybrid" and body["limit"] == 2 and body["offset"] == 0
    assert body["query"]["q"] == "a river" and body["model"] == "fake-clip"
    assert body["total"] == 5 and len(body["hits"]) == 2
    hit = body["hits"][0]
    assert set(hit) >= {"id", "score", "scores", "captions", "dataset", "category", "split",
                        "image_url"}
    assert set(hit["scores"]) == {"lexical", "vector"}
    assert hit["image_url"] == "/images/t%3A0"
    assert set(body["timings_ms"]) == {"encode", "search", "total"}


def test_filters_repeat_in_query_string(tmp_path: Path) -> None:
    index = RecordingIndex([doc(1)])
    with _client(tmp_path, index=index) as c:
        r = c.get("/search?q=x&mode=lexical&dataset=a&dataset=b&category=c&split=test")
        assert r.status_code == 200, r.text
    f = index.plans[-1].filters
    assert (f.dataset, f.category, f.split) == (["a", "b"], ["c"], ["test"])
    assert index.plans[-1].vector is None  # lexical mode never encodes


def test_post_search_and_fusion_parameters(tmp_path: Path) -> None:
    index = RecordingIndex([doc(1)])
    with _client(tmp_path, index=index) as c:
        r = c.post("/search", json={"q": "x", "fusion": "linear", "alpha": 0.25})
        assert r.status_code == 200, r.text
        assert r.json()["query"]["alpha"] == 0.25
    assert index.plans[-1].hybrid.fusion.value == "linear"
    assert index.plans[-1].hybrid.alpha == 0.25


@pytest.mark.parametrize(
    "params",
    [
        {"q": "x", "mode": "fuzzy"},
        {"q": "x", "limit": 0},
        {"q": "x", "limit": 101},
        {"q": "x", "offset": -1},
        {"q": "x", "alpha": 1.5},
        {"mode": "lexical"},
        {"q": "   ", "mode": "vector"},
        {"q": "x", "dataset": 'bad"value'},
        {"q": "x", "unknown": "1"},
        {"image_id": "t:1", "mode": "lexical"},
    ],
)
def test_bad_parameters_are_422_with_reason(client: TestClient, params: dict[str, Any]) -> None:
    r = client.get("/search", params=params)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["status"] == 422 and err["reason"] == "invalid_request" and err["message"]


def test_quotes_and_query_syntax_in_text_are_plain_text(tmp_path: Path) -> None:
    index = RecordingIndex([doc(1)])
    with _client(tmp_path, index=index) as c:
        text = 'he said "runway" AND (NOT x) OR dataset:y \\ ; DROP'
        r = c.get("/search", params={"q": text, "mode": "lexical"})
        assert r.status_code == 200, r.text
    assert index.plans[-1].text == text


def test_more_like_this_uses_the_stored_vector(tmp_path: Path) -> None:
    index = RecordingIndex([doc(i) for i in range(3)])
    embedder = FakeEmbedder()
    with _client(tmp_path, index=index, embedder=embedder) as c:
        r = c.get("/search", params={"image_id": "t:1", "mode": "vector", "exclude_image": True})
        assert r.status_code == 200, r.text
        assert "t:1" not in [h["id"] for h in r.json()["hits"]]
    assert index.plans[-1].vector == pytest.approx(index.docs["t:1"].embedding, abs=1e-6)
    assert embedder.texts == []


def test_unknown_image_id_is_404(client: TestClient) -> None:
    r = client.get("/search", params={"image_id": "t:999", "mode": "vector"})
    assert r.status_code == 404
    assert r.json()["error"]["reason"] == "not_found"
    assert client.get("/images/t:999").status_code == 404
    assert client.get("/documents/t:999").status_code == 404


def test_encoder_down_lexical_still_works(tmp_path: Path) -> None:
    with _client(tmp_path, embedder=FakeEmbedder(down=True)) as c:
        assert c.get("/search", params={"q": "x", "mode": "lexical"}).status_code == 200
        r = c.get("/search", params={"q": "x", "mode": "hybrid"})
        assert r.status_code == 503 and r.headers["Retry-After"]
        assert r.json()["error"]["reason"] == "encoder_unavailable"
        ready = c.get("/ready")
        assert ready.status_code == 503 and ready.json()["encoder"].startswith("down")
        assert c.get("/health").status_code == 200


def test_index_down_is_503(tmp_path: Path) -> None:
    with _client(tmp_path, index=RecordingIndex(down=True)) as c:
        r = c.get("/search", params={"q": "x", "mode": "lexical"})
        assert r.status_code == 503 and "Retry-After" in r.headers
        assert c.get("/ready").status_code == 503


def test_image_without_file_is_404(client: TestClient) -> None:
    r = client.get("/images/t:1")
    assert r.status_code == 404 and r.json()["error"]["reason"] == "not_found"


def test_path_traversal_is_not_possible(client: TestClient) -> None:
    for path in ("/images/..%2F..%2Fetc%2Fpasswd", "/images/../../etc/passwd"):
        r = client.get(path)
        assert r.status_code in (404, 422)
        assert "root:" not in r.text


def test_metrics_count_searches(client: TestClient) -> None:
    client.get("/search", params={"q": "x", "mode": "lexical"})
    client.get("/search", params={"q": "x", "mode": "bogus"})
    text = client.get("/metrics").text
    assert 'clipsearch_searches_total{mode="lexical",status="ok"} 1.0' in text
    assert 'clipsearch_http_requests_total{method="GET",route="/search",status="422"} 1.0' in text
    assert "clipsearch_search_stage_seconds_bucket" in text


def test_api_key(tmp_path: Path) -> None:
    with _client(tmp_path, api_key="s3cret") as c:
        assert c.get("/search", params={"q": "x"}).status_code == 401
        ok = c.get("/search", params={"q": "x"}, headers={"X-API-Key": "s3cret"})
        assert ok.status_code == 200
        assert c.get("/health").status_code == 200


def test_unknown_route_is_json_404(client: TestClient) -> None:
    r = client.get("/nope")
    assert r.status_code == 404 and r.json()["error"]["reason"] == "not_found"


def test_page_and_openapi(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "<form" in page.text
    spec = client.get("/openapi.json").json()
    assert "/search" in spec["paths"] and "/images/{doc_id}" in spec["paths"]


def test_upload_search(tmp_path: Path) -> None:
    index = RecordingIndex([doc(i) for i in range(3)])
    embedder = FakeEmbedder()
    with _client(tmp_path, index=index, embedder=embedder) as c:
        r = c.post("/search/image", files={"image": ("q.png", b"\x89PNG...", "image/png")},
                   data={"q": "a lake", "mode": "hybrid", "dataset": ["t"], "limit": "2"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["query"]["uploaded_image"] is True and body["mode"] == "hybrid"
        assert len(body["hits"]) == 2
    plan = index.plans[-1]
    assert plan.text == "a lake" and plan.vector is not None and plan.filters.dataset == ["t"]


@pytest.mark.parametrize(
    ("files", "data", "status"),
    [
        (None, {"mode": "vector"}, 422),  # no image part
        ({"image": ("q.png", b"", "image/png")}, {}, 422),  # empty file
        ({"image": ("q.png", b"x", "image/png")}, {"mode": "lexical"}, 422),
        ({"image": ("q.png", b"x", "image/png")}, {"image_id": "t:1"}, 422),
        ({"image": ("q.png", b"x", "image/png")}, {"limit": "1000"}, 422),
    ],
)
def test_upload_errors(tmp_path: Path, files: Any, data: dict[str, Any], status: int) -> None:
    with _client(tmp_path) as c:
        r = c.post("/search/image", files=files, data=data)
        assert r.status_code == status, r.text
        assert r.json()["error"]["status"] == status


def test_upload_too_large_is_413(tmp_path: Path) -> None:
    with _client(tmp_path, max_image_bytes=2048) as c:
        big = b"\xff" * 4096
        r = c.post("/search/image", files={"image": ("q.jpg", big, "image/jpeg")})
        assert r.status_code == 413 and r.json()["error"]["reason"] == "image_too_large"
        huge = b"\xff" * (2048 + 200_000)  # refused from Content-Length, before parsing
        r = c.post("/search/image", files={"image": ("q.jpg", huge, "image/jpeg")})
        assert r.status_code == 413


def test_prompt_template_applies_to_vector_leg_only(tmp_path: Path) -> None:
    index = RecordingIndex([doc(1)])
    embedder = FakeEmbedder()
    templates = {"rsicd": "an aerial photograph of {q}", "*": "a photo of {q}"}
    with _client(tmp_path, index=index, embedder=embedder, prompt_templates=templates) as c:
        body = c.get("/search", params={"q": "a {weird} river", "dataset": "rsicd"}).json()
        assert body["query"]["vector_text"] == "an aerial photograph of a {weird} river"
        assert index.plans[-1].text == "a {weird} river"  # lexical leg: the user's words
        c.get("/search", params={"q": "river"})
        c.get("/search", params={"q": "river", "prompt": "false"})
    assert embedder.texts == ["an aerial photograph of a {weird} river", "a photo of river",
                              "river"]


def test_bad_prompt_template_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="exactly once"):
        Settings(prompt_templates={"x": "no placeholder"})


def test_facets_count_the_top_hits(tmp_path: Path) -> None:
    docs = [doc(i, category="a" if i < 3 else "b") for i in range(5)]
    with _client(tmp_path, index=RecordingIndex(docs)) as c:
        body = c.get("/search", params={"q": "x", "facets": "true", "limit": 2}).json()
        assert body["facets"] == {"window": 5, "dataset": {"t": 5}, "category": {"a": 3, "b": 2}}
        assert len(body["hits"]) == 2
        assert c.get("/search", params={"q": "x"}).json()["facets"] is None


def test_weighted_parts_combine_into_one_vector(tmp_path: Path) -> None:
    import base64

    import numpy as np

    index = RecordingIndex([doc(i) for i in range(3)])
    embedder = FakeEmbedder()
    parts = [{"text": "harbour", "weight": 1.0}, {"image_id": "t:1", "weight": 0.5},
             {"text": "boats", "weight": -0.5},
             {"image": base64.b64encode(b"img").decode(), "weight": 2.0}]
    with _client(tmp_path, index=index, embedder=embedder) as c:
        r = c.post("/search", json={"q": "port", "parts": parts, "mode": "hybrid"})
        assert r.status_code == 200, r.text
    plan = index.plans[-1]
    assert plan.text == "port harbour"  # positive text parts drive the lexical leg
    assert embedder.texts == ["port", "harbour", "boats", "3"]  # "3": the fake embeds len(bytes)
    from tests.api_fakes import unit

    expected = (np.array(unit(4)) + np.array(unit(7)) - 0.5 * np.array(unit(5))
                + 0.5 * np.array(index.docs["t:1"].embedding) + 2.0 * np.array(unit(1)))
    expected /= np.linalg.norm(expected)
    assert plan.vector == pytest.approx(expected.tolist(), abs=1e-5)


def test_parts_that_cancel_are_422(tmp_path: Path) -> None:
    with _client(tmp_path) as c:
        r = c.post("/search", json={"parts": [{"text": "river", "weight": 1.0},
                                              {"text": "river", "weight": -1.0}],
                                    "mode": "vector"})
        assert r.status_code == 422 and r.json()["error"]["reason"] == "degenerate_query"


@pytest.mark.parametrize(
    "body",
    [
        {"parts": [{"text": "a", "image_id": "t:1"}]},  # two sources in one part
        {"parts": [{"weight": 1.0}]},  # no source
        {"parts": [{"text": "a", "weight": 0}]},
        {"parts": [{"text": "a", "weight": 11}]},
        {"parts": [{"image_id": "t:1"}], "mode": "lexical"},
        {"parts": [{"text": "a", "weight": -1}], "mode": "lexical"},
        {"parts": []},
        {"parts": [{"image": "not base64!!"}], "mode": "vector"},
    ],
)
def test_bad_parts_are_422(tmp_path: Path, body: dict[str, Any]) -> None:
    with _client(tmp_path) as c:
        r = c.post("/search", json=body)
        assert r.status_code == 422, r.text


def test_unknown_image_id_in_parts_is_404(tmp_path: Path) -> None:
    with _client(tmp_path) as c:
        r = c.post("/search", json={"parts": [{"image_id": "t:404"}], "mode": "vector"})
        assert r.status_code == 404


def _save_probe(data_dir: Path, name: str, direction: list[float], model_id: str) -> None:
    from datetime import UTC, datetime

    from clipsearch.steering import Probe, ProbeStore
    from clipsearch.steering.probe import ProbeQuality

    probe = Probe(name=name, attribute="textness", model_id=model_id, dim=len(direction),
                  direction=direction, coef_norm=1.0, intercept=0.0,
                  quality=ProbeQuality(accuracy=0.9, balanced_accuracy=0.9, n_train=8,
                                       n_test=2),
                  n_positive=5, n_negative=5, created=datetime.now(UTC))
    ProbeStore(Settings(data_dir=data_dir), model_id=model_id, dim=len(direction)).save(probe)


def test_steer_moves_the_text_vector_along_the_probe(tmp_path: Path) -> None:
    import numpy as np

    from tests.api_fakes import unit

    direction = unit(99)
    _save_probe(tmp_path, "textness", direction, "fake-clip")
    index = RecordingIndex([doc(1)])
    with _client(tmp_path, index=index) as c:
        r = c.get("/search", params={"q": "river", "mode": "vector", "steer": "textness:1.5"})
        assert r.status_code == 200, r.text
        expected = np.array(unit(5)) + 1.5 * np.array(direction)
        expected /= np.linalg.norm(expected)
        assert index.plans[-1].vector == pytest.approx(expected.tolist(), abs=1e-5)
        for steer, reason in [("nope:1", "unknown_probe"), ("textness:3", "invalid_steer"),
                              ("textness:x", "invalid_steer")]:
            r = c.get("/search", params={"q": "river", "steer": steer})
            assert r.status_code == 422, (steer, r.text)
            assert r.json()["error"]["reason"].startswith(reason.split("_")[0])
        r = c.get("/search", params={"image_id": "t:1", "mode": "vector",
                                     "steer": "textness:1"})
        assert r.status_code == 422 and "text" in r.json()["error"]["message"]


def test_steer_refuses_a_probe_of_another_model(tmp_path: Path) -> None:
    from tests.api_fakes import unit

    _save_probe(tmp_path, "other", unit(3), "some/other-model")
    with _client(tmp_path) as c:
        r = c.get("/search", params={"q": "river", "steer": "other:1"})
        assert r.status_code == 422
        assert "other-model" in r.json()["error"]["message"] or \
            "model" in r.json()["error"]["message"]


def test_missing_model_keeps_lexical_and_explains_503(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, model=str(tmp_path / "no-such-model")),
                     index=RecordingIndex([doc(1)]))
    with TestClient(app) as c:
        assert c.get("/search", params={"q": "x", "mode": "lexical"}).status_code == 200
        r = c.get("/search", params={"q": "x", "mode": "vector"})
        message = r.json()["error"]["message"]  # why, without the local path (issue 16)
        assert r.status_code == 503 and "could not be loaded" in message
        assert "no-such-model" not in message and str(tmp_path) not in message
