"""The encoder as users run it: a real uvicorn process, spoken to over real HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from clipsearch.encoder_client import RemoteEmbedder
from clipsearch.errors import InvalidImage
from clipsearch.models.model import ClipEncoder
from tests import encoder_images as zoo
from tests.servers import free_port, wait_until_up

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # starts a Python process that imports torch (~5-30 s)


@pytest.fixture(scope="module")
def server(tiny_clip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "CLIPSEARCH_MODEL": str(tiny_clip_dir), "CLIPSEARCH_RUNTIME": "torch",
           "CLIPSEARCH_ENCODER_PORT": str(port), "CLIPSEARCH_HOST": "127.0.0.1",
           "CLIPSEARCH_DATA_DIR": str(tmp_path_factory.mktemp("enc-data")),
           "HF_HUB_OFFLINE": "1"}
    log = tmp_path_factory.mktemp("enc-log") / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "services.encoder"], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until_up(f"{url}/info", 150, proc=proc)  # a loaded 2-core box
        except AssertionError as exc:
            pytest.fail(f"encoder did not come up ({exc}):\n{log.read_text()}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def test_remote_embedder_over_http(server: str, tiny_clip_dir: Path) -> None:
    local = ClipEncoder.load(str(tiny_clip_dir))
    remote = RemoteEmbedder(server, timeout_s=30)
    info = await remote.connect()
    assert info.model == str(tiny_clip_dir) and info.runtime == "torch"
    texts = await remote.embed_texts(["a lake seen from above", "runway"])
    assert np.allclose(texts.vectors, local.embed_texts(["a lake seen from above",
                                                         "runway"]).vectors, atol=1e-5)
    img = zoo.jpeg(90, 60, seed=4)
    got = await remote.embed_images([img])
    want = local.embed_images([img], max_bytes=1 << 20, max_pixels=10**7)
    assert np.allclose(got.vectors, want.vectors, atol=1e-5)
    with pytest.raises(InvalidImage, match="image 0"):
        await remote.embed_images([b"GIF89a broken"])
    await remote.ping()
    await remote.close()
    metrics = httpx.get(f"{server}/metrics").text
    assert 'route="/embed/image",status="422"' in metrics
