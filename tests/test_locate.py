"""``POST /locate``: the patch grid, its scores, and the endpoint's behaviour and errors.

A fake encoder that "sees" red (``tests.locate_fixtures.RedSeeingEmbedder``) makes the scores
deterministic: a red square on grey must come out as the best box. The tiny CLIP checks that
the in-process pixel path and the bytes path (remote encoder) give the same vectors.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from clipsearch.errors import InvalidRequest
from clipsearch.models.patch_encoding import embed_patches
from clipsearch.models.patch_heatmap import render_overlay
from clipsearch.models.patches import (
    MAX_PATCHES,
    box_iou,
    crop_patches,
    heatmap,
    plan_grid,
    score_patches,
)
from clipsearch.settings import Settings
from services.api.app import create_app
from tests.api_fakes import FakeEmbedder, RecordingIndex, doc
from tests.locate_fixtures import RedSeeingEmbedder, red_square

RED_BOX = (160, 32, 224, 96)


# --------------------------------------------------------------------------- geometry


def test_grid_covers_the_image_with_half_overlapping_windows() -> None:
    grids = plan_grid(256, 256, [2, 3, 4])
    assert [(g.scale, g.window, g.stride, g.rows, g.cols) for g in grids] == [
        (2, 128, 64, 3, 3), (3, 85, 42, 5, 5), (4, 64, 32, 7, 7)]
    for g in grids:
        boxes = g.boxes()
        assert len(boxes) == g.count
        assert all(0 <= x0 < x1 <= 256 and 0 <= y0 < y1 <= 256 for x0, y0, x1, y1 in boxes)
        assert max(b[2] for b in boxes) == 256 and max(b[3] for b in boxes) == 256
        covered = np.zeros((256, 256), bool)
        for x0, y0, x1, y1 in boxes:
            covered[y0:y1, x0:x1] = True
        assert covered.all()


def test_grid_on_a_wide_image_uses_square_windows_of_the_short_side() -> None:
    (g,) = plan_grid(300, 100, [2])
    assert g.window == 50 and g.rows == 3 and g.xs[-1] == 250 and g.cols == 11


@pytest.mark.parametrize(("size", "scales", "reason"), [
    ((256, 256), [], "invalid_scales"),
    ((256, 256), [0], "invalid_scales"),
    ((256, 256), [9], "invalid_scales"),
    ((256, 256), [2, 2], "invalid_scales"),
    ((20, 20), [4], "image_too_small"),
    ((8000, 100), [4], "too_many_patches"),
])
def test_grid_refuses_bad_requests(size: tuple[int, int], scales: list[int], reason: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        plan_grid(*size, scales)
    assert err.value.reason == reason


def test_largest_default_grid_stays_under_the_patch_limit() -> None:
    assert sum(g.count for g in plan_grid(1024, 1024)) == 83 <= MAX_PATCHES


def test_iou() -> None:
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (10, 10, 20, 20)) == 0.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)


# --------------------------------------------------------------------------- scoring


async def _score_red(png: bytes, scales: list[int]) -> Any:
    img = Image.open(io.BytesIO(png)).convert("RGB")
    grids = plan_grid(img.width, img.height, scales)
    emb = RedSeeingEmbedder()
    vectors = await embed_patches(emb, crop_patches(img, grids), batch=10)
    text = (await emb.embed_texts(["red"])).vectors[0]
    return score_patches(vectors, text, grids, width=img.width, height=img.height), emb


async def test_scores_find_the_red_square_and_softmax_sums_to_one() -> None:
    scores, emb = await _score_red(red_square(box=RED_BOX), [2, 3, 4])
    assert emb.batches == [10] * 8 + [3]  # 83 patches in batches of at most 10
    assert box_iou(scores.best.box, RED_BOX) > 0.9
    assert scores.best.scale == 4
    for gs in scores.grids:
        assert gs.softmax.sum() == pytest.approx(1.0, abs=1e-5)
        assert np.argmax(gs.softmax) == np.argmax(gs.cosine)
        assert gs.cosine.shape == (gs.grid.rows, gs.grid.cols)
    hm = heatmap(scores)
    assert hm.shape == (64, 64) and hm.max() == pytest.approx(1.0)
    y, x = np.unravel_index(np.argmax(hm), hm.shape)
    assert 160 <= x * 4 < 224 and 32 <= y * 4 < 96  # the hottest cell is on the square


async def test_heatmap_png_is_the_image_size_with_the_box_drawn() -> None:
    png = red_square(width=300, height=200, box=(20, 120, 80, 180))
    scores, _ = await _score_red(png, [2, 3])
    out = Image.open(io.BytesIO(render_overlay(Image.open(io.BytesIO(png)), scores)))
    assert out.format == "PNG" and out.size == (300, 200)
    x0, y0, x1, y1 = scores.best.box  # 66-px windows 33 px apart: the one over the centre
    assert x0 <= 50 < x1 and y0 <= 150 < y1 and box_iou(scores.best.box, (20, 120, 80, 180)) > 0.3


def test_score_refuses_a_vector_count_that_does_not_match() -> None:
    grids = plan_grid(64, 64, [2])
    with pytest.raises(ValueError):
        score_patches(np.zeros((3, 4), np.float32), np.ones(4, np.float32), grids,
                      width=64, height=64)


async def test_pixel_path_equals_bytes_path(tiny_clip_dir: Path) -> None:
    """In-process crops (no PNG) and crops sent as PNG bytes give the same vectors."""
    from clipsearch.models.local import LocalEmbedder
    from clipsearch.models.model import ClipEncoder

    settings = Settings(model=str(tiny_clip_dir), runtime="torch")
    local = LocalEmbedder(ClipEncoder.load(str(tiny_clip_dir), runtime="torch"), settings)

    class BytesOnly:  # the remote encoder's view: bytes in, vectors out
        model_id, dim = local.model_id, local.dim
        embed_images = local.embed_images

    try:
        img = Image.open(io.BytesIO(red_square())).convert("RGB")
        crops = crop_patches(img, plan_grid(256, 256, [2, 4]))
        direct = await embed_patches(local, crops)
        via_bytes = await embed_patches(BytesOnly(), crops, batch=16)  # type: ignore[arg-type]
        assert direct.shape == (9 + 49, local.dim)
        np.testing.assert_allclose(direct, via_bytes, atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(direct, axis=1), 1.0, atol=1e-5)
    finally:
        await local.close()


# --------------------------------------------------------------------------- the endpoint


def _client(tmp_path: Path, embedder: Any, docs: list[Any] | None = None,
            **settings: Any) -> TestClient:
    index = RecordingIndex(docs or [])
    app = create_app(Settings(data_dir=tmp_path, **settings), index=index, embedder=embedder)
    return TestClient(app)


@pytest.fixture()
def red_file(tmp_path: Path) -> Path:
    path = tmp_path / "red.png"
    path.write_bytes(red_square(box=RED_BOX))
    return path


@pytest.fixture()
def client(tmp_path: Path, red_file: Path) -> Iterator[TestClient]:
    docs = [doc(1, image_uri=str(red_file)), doc(2, image_uri=str(tmp_path / "gone.png")),
            doc(3, image_uri="https://example.org/x.png")]
    with _client(tmp_path, RedSeeingEmbedder(), docs) as c:
        yield c


def _box(body: dict[str, Any]) -> tuple[int, int, int, int]:
    b = body["best"]
    return b["x0"], b["y0"], b["x1"], b["y1"]


def test_locate_an_indexed_image(client: TestClient) -> None:
    r = client.post("/locate", json={"image_id": "t:1", "text": "red"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["image_id"] == "t:1" and body["model"] == "fake-red"
    assert (body["width"], body["height"], body["patches"]) == (256, 256, 83)
    assert box_iou(_box(body), RED_BOX) > 0.9
    assert [s["scale"] for s in body["scales"]] == [2, 3, 4]
    s4 = body["scales"][2]
    assert (s4["rows"], s4["cols"], s4["window"], s4["stride"]) == (7, 7, 64, 32)
    assert len(s4["cosine"]) == 7 and len(s4["softmax"][0]) == 7
    assert sum(map(sum, s4["softmax"])) == pytest.approx(1.0, abs=1e-4)
    assert body["heatmap_png"] is None
    assert set(body["timings_ms"]) == {"decode", "encode", "score", "total"}


def test_locate_an_upload_multipart_with_heatmap(client: TestClient) -> None:
    png = red_square(width=320, height=240, box=(16, 150, 80, 214), fmt="JPEG")
    r = client.post("/locate", files={"image": ("x.jpg", png, "image/jpeg")},
                    data={"text": "red", "scales": "2,3", "heatmap": "true"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["image_id"] is None and [s["scale"] for s in body["scales"]] == [2, 3]
    assert box_iou(_box(body), (16, 150, 80, 214)) > 0.4
    assert body["heatmap_png"].startswith("data:image/png;base64,")
    img = Image.open(io.BytesIO(base64.b64decode(body["heatmap_png"].split(",", 1)[1])))
    assert img.size == (320, 240)


def test_locate_base64_json_and_png_answer(client: TestClient) -> None:
    data = base64.b64encode(red_square(box=RED_BOX)).decode()
    r = client.post("/locate", json={"image": "data:image/png;base64," + data, "text": "red",
                                     "scales": [4]}, headers={"Accept": "image/png"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(r.content)).size == (256, 256)
    assert tuple(int(v) for v in r.headers["x-best-box"].split(",")) == RED_BOX


def test_prompt_template_wraps_the_text(tmp_path: Path, red_file: Path) -> None:
    emb = FakeEmbedder()
    with _client(tmp_path, emb, [doc(1, image_uri=str(red_file))],
                 prompt_templates={"t": "a photo of {q}"}) as c:
        r = c.post("/locate", json={"image_id": "t:1", "text": "red", "prompt": True,
                                    "scales": [2]})
        assert r.status_code == 200, r.text
        assert r.json()["encoded_text"] == "a photo of red"
        assert "a photo of red" in emb.texts


@pytest.mark.parametrize(("body", "status", "reason"), [
    ({"image_id": "t:404", "text": "red"}, 404, "not_found"),
    ({"image_id": "t:2", "text": "red"}, 404, "not_found"),  # file gone
    ({"image_id": "t:3", "text": "red"}, 404, "not_found"),  # remote URL, not served
    ({"image_id": "t:1", "text": "  "}, 422, "invalid_request"),
    ({"image_id": "t:1", "text": ""}, 422, "invalid_request"),
    ({"image_id": "t:1"}, 422, "invalid_request"),
    ({"text": "red"}, 422, "invalid_request"),
    ({"image_id": "t:1", "image": "AAAA", "text": "red"}, 422, "invalid_request"),
    ({"image_id": "t:1", "text": "red", "scales": [0]}, 422, "invalid_request"),
    ({"image_id": "t:1", "text": "red", "scales": [2, 2]}, 422, "invalid_request"),
    ({"image_id": "t:1", "text": "red", "scales": []}, 422, "invalid_request"),
    ({"image_id": "t:1", "text": "red", "temperature": 0}, 422, "invalid_request"),
    ({"image_id": "t:1", "text": "red", "extra": 1}, 422, "invalid_request"),
    ({"image_id": "bad id!", "text": "red"}, 422, "invalid_request"),
    ({"image": "not base64!", "text": "red"}, 422, "invalid_base64"),
    ({"image": base64.b64encode(b"GIF89a-not-really").decode(), "text": "red"}, 422,
     "invalid_image"),
    ({"image": base64.b64encode(red_square(width=20, height=20, box=(0, 0, 5, 5))).decode(),
      "text": "red"}, 422, "image_too_small"),
    ({"image": base64.b64encode(red_square(width=4000, height=40, box=(0, 0, 5, 5))).decode(),
      "text": "red"}, 422, "too_many_patches"),
])
def test_errors_follow_the_api_rules(client: TestClient, body: dict[str, Any], status: int,
                                     reason: str) -> None:
    r = client.post("/locate", json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["reason"] == reason


def test_multipart_errors(client: TestClient) -> None:
    png = red_square()
    r = client.post("/locate", data={"text": "red"}, files={"other": ("x", b"1")})
    assert r.status_code == 422 and r.json()["error"]["reason"] == "unknown_field"
    r = client.post("/locate", files={"text": (None, "red"), "image": (None, "not a file")})
    assert r.status_code == 422 and r.json()["error"]["reason"] == "no_image"
    r = client.post("/locate", files={"image": ("x.png", png, "image/png")},
                    data={"text": "red", "scales": "2,x"})
    assert r.status_code == 422 and r.json()["error"]["reason"] == "invalid_request"
    r = client.post("/locate", files={"image": ("x.png", png, "image/png")})
    assert r.status_code == 422  # no text
    r = client.post("/locate", files={"image": ("x.png", b"", "image/png")}, data={"text": "r"})
    assert r.status_code == 422 and r.json()["error"]["reason"] == "empty_image"
    r = client.post("/locate", content=b"text=red",
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415


def test_too_large_images_get_413(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + bytes(5000))
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    buf = io.BytesIO()
    noisy.save(buf, format="PNG")
    with _client(tmp_path, RedSeeingEmbedder(), [doc(1, image_uri=str(big))],
                 max_image_bytes=4096, max_image_pixels=64 * 64) as c:
        r = c.post("/locate", json={"image_id": "t:1", "text": "red"})
        assert r.status_code == 413, r.text
        r = c.post("/locate", files={"image": ("x.png", buf.getvalue(), "image/png")},
                   data={"text": "red"})
        assert r.status_code == 413 and r.json()["error"]["reason"] == "image_too_large"
        r = c.post("/locate", json={"image": base64.b64encode(red_square(
            width=65, height=64, box=(0, 0, 8, 8))).decode(), "text": "red"})
        assert r.status_code == 413, r.text  # 65x64 pixels > 64x64


def test_encoder_down_is_503(tmp_path: Path, red_file: Path) -> None:
    with _client(tmp_path, FakeEmbedder(down=True), [doc(1, image_uri=str(red_file))]) as c:
        r = c.post("/locate", json={"image_id": "t:1", "text": "red"})
        assert r.status_code == 503 and "retry-after" in r.headers
    app = create_app(Settings(data_dir=tmp_path), index=RecordingIndex([doc(1)]),
                     embedder=FakeEmbedder())
    with TestClient(app) as c:
        app.state.api.embedder = None  # the gateway started without an encoder
        app.state.api.embedder_error = "encoder at http://x unreachable"
        r = c.post("/locate", json={"image": base64.b64encode(red_square()).decode(),
                                    "text": "red"})
        assert r.status_code == 503 and "unreachable" in r.json()["error"]["message"]


def test_openapi_documents_both_bodies(client: TestClient) -> None:
    op = client.get("/openapi.json").json()["paths"]["/locate"]["post"]
    assert set(op["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert {"404", "413", "422", "503"} <= set(op["responses"])


async def test_remote_encoder_path_matches_the_local_one(tiny_clip_dir: Path,
                                                         tmp_path: Path) -> None:
    """The gateway with the encoder service (bytes over HTTP, batches within its per-request
    limit) scores the windows like the gateway with the model in-process."""
    import httpx

    from clipsearch.encoder_client import RemoteEmbedder
    from clipsearch.models.local import LocalEmbedder
    from clipsearch.models.model import ClipEncoder
    from services.encoder.app import create_app as create_encoder_app

    encoder = ClipEncoder.load(str(tiny_clip_dir), runtime="torch")
    enc_settings = Settings(model=str(tiny_clip_dir), runtime="torch", max_images_per_request=16)
    enc_app = create_encoder_app(enc_settings, encoder=encoder)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=enc_app), base_url="http://enc")
    remote = RemoteEmbedder("http://enc", client=http)
    await remote.connect()
    local = LocalEmbedder(encoder, enc_settings)
    png = red_square(width=320, height=256)
    bodies = []
    try:
        for emb in (remote, local):
            app = create_app(Settings(data_dir=tmp_path, max_images_per_request=16),
                             index=RecordingIndex([doc(1)]), embedder=emb)
            async with app.router.lifespan_context(app), httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://api") as c:
                r = await c.post("/locate", files={"image": ("x.png", png, "image/png")},
                                 data={"text": "a red square"})
                assert r.status_code == 200, r.text
                bodies.append(r.json())
    finally:
        await http.aclose()
        await local.close()
    via_http, in_process = bodies
    assert via_http["patches"] == in_process["patches"] == 4 * 3 + 7 * 5 + 9 * 7  # 320 x 256
    for a, b in zip(via_http["scales"], in_process["scales"], strict=True):
        x, y = np.ravel(a["cosine"]), np.ravel(b["cosine"])
        assert np.corrcoef(x, y)[0, 1] > 0.95 and np.abs(x - y).max() < 0.05
