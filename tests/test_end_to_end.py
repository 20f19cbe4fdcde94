"""Dataset -> feeder -> embedded index -> HTTP API, with the tiny CLIP, through the real code
paths users take (settings, model loading from a directory, lifespan-opened index)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from clipsearch.settings import Settings
from feeder.commands import FeedRequest, run_feed
from services.api.app import create_app
from tests.sample_words import a_caption, split_word
from tests.servers import ThreadServer, free_port, wait_until_up


@pytest.fixture(scope="module")
def fed_settings(tiny_clip_dir: Path, sample_dataset: Any,
                 tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = Settings(data_dir=tmp_path_factory.mktemp("e2e-data"), model=str(tiny_clip_dir),
                        encoder_url="")
    report = run_feed(settings, FeedRequest(source=sample_dataset.manifest, format="generic",
                                            progress=False))
    assert report.consistent and report.read == len(sample_dataset.records)
    assert report.indexed == len(sample_dataset.records) and report.skipped == 0
    return settings


@pytest.fixture(scope="module")
def client(fed_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(fed_settings)) as c:
        yield c


def _search(client: TestClient, **params: Any) -> dict[str, Any]:
    r = client.get("/search", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_caption_word_finds_its_images_lexically(client: TestClient, sample_dataset: Any,
                                                word_category: dict[str, str]) -> None:
    assert len(word_category) == 3
    for word, category in word_category.items():
        body = _search(client, q=word, mode="lexical", limit=50)
        expected = {f"sample:{r.id}" for r in sample_dataset.records
                    if any(word in c for c in r.captions)}
        assert expected, word
        assert {h["id"] for h in body["hits"]} == expected
        assert all(h["category"] == category for h in body["hits"])
        assert all(h["scores"]["lexical"] > 0 and h["scores"]["vector"] is None
                   for h in body["hits"])


def test_indexed_image_finds_itself_first(client: TestClient, sample_dataset: Any) -> None:
    for rec in sample_dataset.records[::5]:
        body = _search(client, image_id=f"sample:{rec.id}", mode="vector", limit=3)
        top = body["hits"][0]
        assert top["id"] == f"sample:{rec.id}"
        assert top["scores"]["vector"] == pytest.approx(1.0, abs=1e-4)


def test_filters_exclude(client: TestClient, sample_dataset: Any) -> None:
    category = sample_dataset.records[0].category
    body = _search(client, q="aerial view", mode="hybrid", category=category, limit=50)
    assert body["hits"] and all(h["category"] == category for h in body["hits"])
    body = _search(client, q="aerial view", mode="vector", dataset="nope", limit=50)
    assert body["hits"] == [] and body["total"] == 0
    body = _search(client, q=split_word(sample_dataset.records, "test"), mode="lexical",
                   split="test", limit=50)
    assert body["hits"] and all(h["split"] == "test" for h in body["hits"])


def test_hybrid_contains_both_legs_top_hits(client: TestClient, sample_dataset: Any,
                                            word_category: dict[str, str]) -> None:
    first, _, last = word_category
    for q in (first, a_caption(sample_dataset.records, 1), last):
        lexical = _search(client, q=q, mode="lexical", limit=3)["hits"]
        vector = _search(client, q=q, mode="vector", limit=3)["hits"]
        hybrid = _search(client, q=q, mode="hybrid", limit=10)["hits"]
        ids = {h["id"] for h in hybrid}
        assert lexical[0]["id"] in ids and vector[0]["id"] in ids
        assert all(h["scores"]["vector"] is not None for h in hybrid)
        scores = [h["score"] for h in hybrid]
        assert scores == sorted(scores, reverse=True)


def test_same_request_same_hits(client: TestClient, sample_dataset: Any) -> None:
    q = a_caption(sample_dataset.records, -1)
    a = _search(client, q=q, mode="hybrid", limit=10)
    b = _search(client, q=q, mode="hybrid", limit=10)
    assert [h["id"] for h in a["hits"]] == [h["id"] for h in b["hits"]]


def test_paging_is_consistent(client: TestClient) -> None:
    full = [h["id"] for h in _search(client, q="aerial view", mode="hybrid", limit=10)["hits"]]
    page2 = [h["id"] for h in _search(client, q="aerial view", mode="hybrid", limit=5,
                                      offset=5)["hits"]]
    assert page2 == full[5:10]


def test_errors(client: TestClient) -> None:
    assert client.get("/search", params={"q": "x", "mode": "semantic"}).status_code == 422
    r = client.get("/search", params={"image_id": "sample:missing", "mode": "vector"})
    assert r.status_code == 404
    assert client.get("/images/sample:missing").status_code == 404


def test_image_served_from_the_index_record(client: TestClient, sample_dataset: Any) -> None:
    rec = sample_dataset.records[0]
    r = client.get(f"/images/sample:{rec.id}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content == (sample_dataset.root / rec.file).read_bytes()
    thumb = client.get(f"/images/sample:{rec.id}", params={"size": 32})
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    doc = client.get(f"/documents/sample:{rec.id}").json()
    assert doc["captions"] == rec.captions and doc["category"] == rec.category


def test_index_survives_restart(fed_settings: Settings, sample_dataset: Any, word: str) -> None:
    with TestClient(create_app(fed_settings)) as c:
        ready = c.get("/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["documents"] == len(sample_dataset.records)
        body = _search(c, q=word, mode="lexical")
        assert body["hits"]


def test_remote_encoder_service(fed_settings: Settings, word: str) -> None:
    from services.encoder.app import create_app as create_encoder_app

    encoder = ThreadServer(create_encoder_app(fed_settings), deadline_s=180)
    remote = fed_settings.model_copy(update={"encoder_url": encoder.url})
    with encoder, TestClient(create_app(remote)) as c:
        body = _search(c, q=word, mode="vector", limit=3)
        assert body["model"] and len(body["hits"]) == 3
        assert c.get("/ready").status_code == 200
    # the encoder is gone: lexical keeps working, vector says 503 with Retry-After
    with TestClient(create_app(remote)) as c:
        assert c.get("/search", params={"q": word, "mode": "lexical"}).status_code == 200
        r = c.get("/search", params={"q": word, "mode": "vector"})
        assert r.status_code == 503 and "Retry-After" in r.headers


def test_cli_serve_answers_over_http(fed_settings: Settings,
                                     word_category: dict[str, str]) -> None:
    word, category = next(iter(word_category.items()))
    port = free_port()
    env = {**os.environ, "CLIPSEARCH_DATA_DIR": str(fed_settings.data_dir),
           "CLIPSEARCH_MODEL": fed_settings.model, "CLIPSEARCH_API_PORT": str(port),
           "CLIPSEARCH_ENCODER_URL": ""}
    log = fed_settings.data_dir / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "clipsearch.cli", "serve"], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health", 180, proc=proc)
        r = httpx.get(f"http://127.0.0.1:{port}/search",
                      params={"q": word, "mode": "hybrid"}, timeout=30)
        assert r.status_code == 200 and r.json()["hits"][0]["category"] == category
    except AssertionError:
        print(log.read_text(errors="replace")[-3000:])
        raise
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_cli_demo_feeds_without_serving(tiny_clip_dir: Path, sample_dataset: Any,
                                        tmp_path: Path) -> None:
    env = {**os.environ, "CLIPSEARCH_DATA_DIR": str(tmp_path), "CLIPSEARCH_RUNTIME": "torch"}
    cmd = [sys.executable, "-m", "clipsearch.cli", "demo", "--no-serve",
           "--model", str(tiny_clip_dir), "--manifest", str(sample_dataset.manifest)]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "indexed" in first.stdout
    # a second run reuses the shards and the index: nothing is encoded again
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    lines = dict(line.split(None, 1) for line in again.stdout.splitlines()
                 if line.startswith(("encoded", "read")))
    assert lines["encoded"].strip() == "0"
    assert lines["read"].strip() == str(len(sample_dataset.records))


def test_cli_reports_bad_settings(tmp_path: Path) -> None:
    env = {**os.environ, "CLIPSEARCH_BACKEND": "elastic"}
    r = subprocess.run([sys.executable, "-m", "clipsearch.cli", "serve"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "CLIPSEARCH_BACKEND: Input should be" in r.stderr


def test_weighted_query_parts_with_the_real_model(client: TestClient, sample_dataset: Any,
                                                  word: str) -> None:
    rec = sample_dataset.records[2]
    doc_id = f"sample:{rec.id}"
    body = client.post("/search", json={"parts": [{"image_id": doc_id, "weight": 2.0},
                                                  {"text": word, "weight": 0.1}],
                                        "mode": "vector", "limit": 3}).json()
    assert body["hits"][0]["id"] == doc_id
    single = client.post("/search", json={"parts": [{"text": word}], "mode": "vector",
                                          "limit": 5}).json()
    plain = _search(client, q=word, mode="vector", limit=5)
    assert [h["id"] for h in single["hits"]] == [h["id"] for h in plain["hits"]]
    r = client.post("/search", json={"parts": [{"image_id": doc_id, "weight": 1.0},
                                               {"image_id": doc_id, "weight": -1.0}],
                                     "mode": "vector"})
    assert r.status_code == 422 and r.json()["error"]["reason"] == "degenerate_query"


def test_upload_search_with_the_real_model(client: TestClient, sample_dataset: Any) -> None:
    rec = sample_dataset.records[7]
    data = (sample_dataset.root / rec.file).read_bytes()
    r = client.post("/search/image", files={"image": ("q.png", data, "image/png")},
                    data={"mode": "vector", "limit": 3})
    assert r.status_code == 200, r.text
    assert r.json()["hits"][0]["id"] == f"sample:{rec.id}"
    bad = client.post("/search/image", files={"image": ("q.png", data[:40], "image/png")})
    assert bad.status_code == 422 and bad.json()["error"]["reason"].startswith("invalid_image")
