"""An encoder restarted with another model behind the same URL is noticed: by the next
embedding response (that request fails as retryable, the next is checked against the new
space) and by ``/ready``'s ping; the encoder service reports the space of its vectors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from clipsearch.encoder_client import RemoteEmbedder
from clipsearch.errors import BackendUnavailable
from clipsearch.models.model import ClipEncoder
from clipsearch.settings import Settings
from services.encoder.app import create_app


class SwappableEncoder:
    """A loopback encoder (httpx MockTransport) whose model can be swapped between calls."""

    def __init__(self) -> None:
        self.model, self.dim, self.space = "model-a", 4, "a" * 64

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            return httpx.Response(200, json={"status": "ok"})
        if request.url.path == "/info":
            return httpx.Response(200, json={"model": self.model, "dim": self.dim,
                                             "space": self.space})
        body: dict[str, Any] = {"model": self.model, "dim": self.dim, "space": self.space,
                                "embeddings": [[1.0] + [0.0] * (self.dim - 1)]}
        return httpx.Response(200, json=body)

    def embedder(self) -> RemoteEmbedder:
        client = httpx.AsyncClient(base_url="http://encoder",
                                   transport=httpx.MockTransport(self.handler))
        return RemoteEmbedder("http://encoder", client=client)


async def test_a_swapped_space_fails_the_request_then_is_checked() -> None:
    encoder = SwappableEncoder()
    remote = encoder.embedder()
    assert (await remote.embed_texts(["x"])).dim == 4 and remote.space_id == "a" * 64
    encoder.space = "b" * 64
    with pytest.raises(BackendUnavailable) as err:
        await remote.embed_texts(["x"])  # these vectors were checked against space a
    assert err.value.reason == "encoder_changed" and err.value.retry_after_s == 1
    assert remote.space_id == "b" * 64  # the next request is checked against space b
    assert (await remote.embed_texts(["x"])).model_id == "model-a"
    encoder.dim = 8
    with pytest.raises(BackendUnavailable):
        await remote.embed_images([b"img"])
    assert remote.dim == 8
    await remote.close()


async def test_a_new_name_in_the_same_space_is_taken_without_failing() -> None:
    encoder = SwappableEncoder()
    remote = encoder.embedder()
    await remote.connect()
    encoder.model = "student-of-a"  # a distilled student declares its teacher's space
    assert (await remote.embed_texts(["x"])).model_id == "student-of-a"
    assert remote.model_id == "student-of-a" and remote.space_id == "a" * 64
    await remote.close()


async def test_ping_rereads_the_encoder_identity() -> None:
    encoder = SwappableEncoder()
    remote = encoder.embedder()
    await remote.ping()
    assert remote.space_id == "a" * 64
    encoder.model, encoder.space = "model-b", "b" * 64
    await remote.ping()
    assert (remote.model_id, remote.space_id) == ("model-b", "b" * 64)
    await remote.close()


async def test_the_encoder_service_reports_the_space_of_its_vectors(tiny_clip_dir: Path) -> None:
    app = create_app(Settings(), encoder=ClipEncoder.load(str(tiny_clip_dir)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://enc") as client:
        info = (await client.get("/info")).json()
        body = (await client.post("/embed/text", json={"texts": ["a red square"]})).json()
    assert body["space"] == info["space"] and len(body["space"]) == 64
