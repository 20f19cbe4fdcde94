"""The encoder service over HTTP, as an ``Embedder`` (used by the gateway and the feeder)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import httpx
import numpy as np

from clipsearch.circuit_breaker import CircuitBreaker
from clipsearch.embeddings import Embeddings, l2_normalize
from clipsearch.encoder_api import EmbedResponse, EncoderInfo, TextEmbedRequest
from clipsearch.errors import (
    BackendError,
    BackendUnavailable,
    ImageTooLarge,
    InvalidImage,
    InvalidRequest,
)
from clipsearch.settings import Settings

log = logging.getLogger(__name__)
UNREACHABLE = "the encoder service does not answer"


class RemoteEmbedder:
    """Talks to ``services.encoder.app`` at ``base_url``.

    Connects lazily: the first embedding call fetches ``/info`` if ``connect()`` has not
    succeeded yet, so a gateway started before its encoder recovers on its own. Connecting
    times out after ``connect_timeout_s`` (a port nobody listens on fails at once, a host
    that drops packets within that time); ``ping`` (used by ``/ready``) waits at most
    ``probe_timeout_s``. With a ``breaker``, consecutive failures make calls fail fast with
    503 + Retry-After until a probe succeeds (``clipsearch.circuit_breaker``). Client messages
    never name the encoder's URL; the log does.
    """

    def __init__(self, base_url: str, *, timeout_s: float = 30.0,
                 connect_timeout_s: float = 1.0, probe_timeout_s: float = 1.0,
                 breaker: CircuitBreaker | None = None,
                 client: httpx.AsyncClient | None = None) -> None:
        self._base_url = base_url.rstrip("/")
        timeout = httpx.Timeout(timeout_s, connect=min(connect_timeout_s, timeout_s))
        self._client = client or httpx.AsyncClient(base_url=self._base_url, timeout=timeout)
        self._owns_client = client is None
        self._info: EncoderInfo | None = None
        self._probe_timeout = httpx.Timeout(probe_timeout_s)
        self._breaker = breaker

    @classmethod
    def from_settings(cls, settings: Settings) -> RemoteEmbedder:
        """The gateway's client: short connect and probe timeouts, a circuit breaker."""
        return cls(settings.encoder_url, timeout_s=settings.encoder_timeout_s,
                   connect_timeout_s=settings.encoder_connect_timeout_s,
                   probe_timeout_s=min(1.0, settings.ready_timeout_s * 0.8),
                   breaker=CircuitBreaker(failures=settings.encoder_breaker_failures,
                                          cooldown_s=settings.encoder_breaker_cooldown_s,
                                          name="encoder", reason="encoder_unavailable"))

    @property
    def breaker(self) -> CircuitBreaker | None:
        return self._breaker

    async def _connected(self) -> None:
        """Fetch ``/info`` now if no earlier ``connect()`` succeeded (the encoder came up
        after the gateway)."""
        if self._info is None:
            await self.connect()

    async def connect(self) -> EncoderInfo:
        """Fetch ``/info`` (model id and dimension); raises BackendUnavailable if down."""
        resp = await self._request("GET", "/info")
        self._info = EncoderInfo.model_validate(resp.json())
        return self._info

    @property
    def info(self) -> EncoderInfo:
        if self._info is None:
            raise BackendUnavailable("encoder not connected yet", reason="encoder_unavailable")
        return self._info

    @property
    def model_id(self) -> str:
        return self.info.model

    @property
    def dim(self) -> int:
        return self.info.dim

    @property
    def space_id(self) -> str | None:
        """The remote model's embedding space (None if not connected or not reported)."""
        return self._info.space if self._info is not None else None

    async def _request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        breaker = self._breaker
        if breaker is not None:
            breaker.before_call()
        try:
            resp = await self._client.request(method, path, **kwargs)  # type: ignore[arg-type]
        except (httpx.TransportError, httpx.TimeoutException) as exc:
            log.warning("encoder at %s: %s %s failed: %r", self._base_url, method, path, exc)
            if breaker is not None:
                breaker.record_failure()
            kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "is unreachable"
            raise BackendUnavailable(f"{UNREACHABLE} ({kind})",
                                     reason="encoder_unavailable") from exc
        except asyncio.CancelledError:
            if breaker is not None:
                breaker.release_probe()
            raise
        if breaker is not None:
            if resp.status_code in (502, 503, 504):
                breaker.record_failure()
            else:
                breaker.record_success()
        if resp.status_code < 400:
            return resp
        message = _error_message(resp)
        if resp.status_code == 413:
            raise ImageTooLarge(message)
        if resp.status_code == 422:
            reason = _error_reason(resp)
            if reason and "image" in reason:
                raise InvalidImage(message, reason=reason)
            raise InvalidRequest(message, reason=reason)
        if resp.status_code in (502, 503, 504):
            raise BackendUnavailable(f"encoder unavailable: {message}",
                                     reason="encoder_unavailable")
        raise BackendError(f"encoder answered {resp.status_code}: {message}",
                           reason="encoder_error")

    def _to_embeddings(self, resp: httpx.Response) -> Embeddings:
        body = EmbedResponse.model_validate(resp.json())
        self._notice_swap(body)
        vectors = np.asarray(body.embeddings, dtype=np.float32).reshape(-1, body.dim)
        return Embeddings(model_id=body.model, vectors=l2_normalize(vectors))

    def _notice_swap(self, body: EmbedResponse) -> None:
        """The encoder may have been restarted with another model since ``/info`` was read.
        The gateway checked this request's embedding space against the index before
        embedding, with the old ``/info``: vectors of another space or size must not be
        used. Take the new identity (the next request is checked against it: 409 on a
        mismatch) and fail this one as retryable."""
        info = self._info
        if info is None:
            return
        space = body.space if body.space is not None else info.space
        if (body.model, body.dim, space) == (info.model, info.dim, info.space):
            return
        log.warning("encoder at %s now serves %s (%d-d, space %s); it served %s (%d-d, space "
                    "%s)", self._base_url, body.model, body.dim, space, info.model, info.dim,
                    info.space)
        self._info = info.model_copy(update={"model": body.model, "dim": body.dim,
                                             "space": space, "fingerprint": None})
        if (body.dim, space) != (info.dim, info.space):
            raise BackendUnavailable("the encoder changed its model during this request; "
                                     "retry", reason="encoder_changed", retry_after_s=1)

    async def embed_texts(self, texts: Sequence[str]) -> Embeddings:
        await self._connected()
        payload = TextEmbedRequest(texts=list(texts)).model_dump()
        return self._to_embeddings(await self._request("POST", "/embed/text", json=payload))

    async def embed_images(self, images: Sequence[bytes]) -> Embeddings:
        await self._connected()
        files = [("files", (f"image{i}", data, "application/octet-stream"))
                 for i, data in enumerate(images)]
        return self._to_embeddings(await self._request("POST", "/embed/image", files=files))

    async def ping(self) -> None:
        """``/health`` then ``/info`` within the probe timeout: ``/ready`` sees a model
        swapped behind the same URL (and the space check uses it from then on)."""
        await self._request("GET", "/health", timeout=self._probe_timeout)
        resp = await self._request("GET", "/info", timeout=self._probe_timeout)
        self._info = EncoderInfo.model_validate(resp.json())

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()


def _error_body(resp: httpx.Response) -> dict[str, object]:
    try:
        body = resp.json()
    except ValueError:
        return {}
    err = body.get("error") if isinstance(body, dict) else None
    return err if isinstance(err, dict) else {}


def _error_message(resp: httpx.Response) -> str:
    msg = _error_body(resp).get("message")
    return str(msg) if msg else f"HTTP {resp.status_code}"


def _error_reason(resp: httpx.Response) -> str | None:
    reason = _error_body(resp).get("reason")
    return str(reason) if reason else None
