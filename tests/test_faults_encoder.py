"""Fault injection (issue 16), the encoder side: a port nobody listens on, an encoder that
accepts connections and never answers (no SIGSTOP needed), and an encoder that comes up after
the gateway. Every wait is a poll with a deadline."""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from clipsearch.circuit_breaker import BreakerState, CircuitBreaker
from clipsearch.encoder_client import RemoteEmbedder
from clipsearch.errors import BackendUnavailable
from clipsearch.settings import Settings
from services.api.app import create_app
from tests.api_fakes import RecordingIndex, doc
from tests.locate_fixtures import red_square
from tests.servers import ThreadServer, free_port


class SilentServer:
    """Accepts TCP connections on loopback and never answers (a hung process)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self._held.append(conn)

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self._held:
            conn.close()
        self.sock.close()


def _settings(tmp_path: Path, url: str, **kw: object) -> Settings:
    base: dict[str, object] = dict(data_dir=tmp_path, embedding_dim=8, encoder_url=url,
                                   encoder_timeout_s=0.5, encoder_connect_timeout_s=0.5,
                                   ready_timeout_s=1.0, encoder_breaker_failures=3,
                                   encoder_breaker_cooldown_s=30.0)
    base.update(kw)
    return Settings.model_validate(base)


def _gateway(settings: Settings) -> TestClient:
    return TestClient(create_app(settings, index=RecordingIndex([doc(i) for i in range(3)])))


def _timed(c: TestClient, path: str, **kw: object) -> tuple[int, float, dict[str, object]]:
    started = time.monotonic()
    r = c.get(path, **kw)  # type: ignore[arg-type]
    return r.status_code, time.monotonic() - started, {**r.json(), **dict(r.headers)}


def test_breaker_opens_after_n_failures_and_half_opens_after_cooldown() -> None:
    now = [0.0]
    b = CircuitBreaker(failures=2, cooldown_s=10, name="encoder", clock=lambda: now[0])
    b.before_call()
    b.record_failure()
    b.before_call()
    b.record_failure()
    assert b.state is BreakerState.open
    with pytest.raises(BackendUnavailable) as info:
        b.before_call()
    assert info.value.retry_after_s == 10
    now[0] = 10.0
    b.before_call()  # the probe
    with pytest.raises(BackendUnavailable):
        b.before_call()  # only one probe at a time
    b.record_failure()  # the probe failed: open again, for a full cool-down
    now[0] = 15.0
    with pytest.raises(BackendUnavailable) as info:
        b.before_call()
    assert info.value.retry_after_s == 5
    now[0] = 20.0
    b.before_call()
    b.record_success()
    assert b.state is BreakerState.closed
    b.before_call()


async def test_nothing_listening_fails_fast_then_the_breaker_answers_at_once() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    remote = RemoteEmbedder.from_settings(Settings(encoder_url=url, encoder_breaker_failures=2))
    try:
        for _ in range(2):
            started = time.monotonic()
            with pytest.raises(BackendUnavailable) as info:
                await remote.embed_texts(["a river"])
            assert time.monotonic() - started < 1.5
            assert "127.0.0.1" not in info.value.message and url not in info.value.message
        started = time.monotonic()
        with pytest.raises(BackendUnavailable) as info:
            await remote.embed_texts(["a river"])
        assert time.monotonic() - started < 0.05 and info.value.retry_after_s >= 1
        assert info.value.reason == "encoder_unavailable"
    finally:
        await remote.close()


def test_hung_encoder_ready_within_deadline_and_searches_fail_fast(tmp_path: Path) -> None:
    with SilentServer() as hung, _gateway(_settings(tmp_path, hung.url)) as c:
        for _ in range(2):
            status, took, body = _timed(c, "/ready")
            assert status == 503 and took < 2.0, (took, body)
            assert str(body["encoder"]).startswith("down: encoder_unavailable")
            assert hung.url not in str(body) and "127.0.0.1" not in str(body["encoder"])
        # startup ping + two /ready probes = 3 failures: the breaker is open now
        status, took, body = _timed(c, "/search", params={"q": "river", "mode": "hybrid"})
        assert status == 503 and took < 0.5 and body["retry-after"], (took, body)
        status, took, body = _timed(c, "/ready")
        assert status == 503 and took < 0.5
        # lexical search does not need the encoder
        assert c.get("/search", params={"q": "caption", "mode": "lexical"}).status_code == 200


@pytest.fixture(scope="module")
def encoder_app(tiny_clip_dir: Path) -> Iterator[object]:
    from clipsearch.models.model import ClipEncoder
    from services.encoder.app import create_app as create_encoder

    yield create_encoder(Settings(model=str(tiny_clip_dir), runtime="torch"),
                         encoder=ClipEncoder.load(str(tiny_clip_dir)))


def test_locate_and_search_recover_when_the_encoder_comes_up_late(
        tmp_path: Path, encoder_app: object) -> None:
    port = free_port()
    settings = _settings(tmp_path, f"http://127.0.0.1:{port}", encoder_timeout_s=30.0,
                         encoder_breaker_cooldown_s=0.2, embedding_dim=64)
    image = base64.b64encode(red_square(width=64, height=64, box=(8, 8, 40, 40))).decode()
    body = {"image": image, "text": "red", "scales": [2]}
    with _gateway(settings) as c:
        r = c.post("/locate", json=body)
        assert r.status_code == 503 and r.headers["retry-after"], r.text
        assert c.get("/ready").status_code == 503
        with ThreadServer(encoder_app, port):
            deadline = time.monotonic() + 30
            while True:
                r = c.post("/locate", json=body)
                if r.status_code == 200 or time.monotonic() > deadline:
                    break
                assert r.status_code == 503, r.text
                time.sleep(0.05)  # poll interval, bounded by the deadline
            assert r.status_code == 200, r.text
            assert r.json()["model"]
            assert c.get("/ready").json()["encoder"] == "ok"
