"""The encoder service over HTTP, as an ``Embedder`` (used by the gateway and the feeder)."""

from __future__ import annotations

from collections.abc import Sequence

import httpx
import numpy as np

from clipsearch.embeddings import Embeddings, l2_normalize
from clipsearch.encoder_api import EmbedResponse, EncoderInfo, TextEmbedRequest
from clipsearch.errors import (
    BackendError,
    BackendUnavailable,
    ImageTooLarge,
    InvalidImage,
    InvalidRequest,
)


class RemoteEmbedder:
    """Talks to ``services.encoder.app`` at ``base_url``. Call ``connect()`` before use."""

    def __init__(self, base_url: str, *, timeout_s: float = 30.0,
                 client: httpx.AsyncClient | None = None) -> None:
        self._base_url = base_url.rstrip("/")
        self._client = client or httpx.AsyncClient(base_url=self._base_url, timeout=timeout_s)
        self._owns_client = client is None
        self._info: EncoderInfo | None = None

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
        try:
            resp = await self._client.request(method, path, **kwargs)  # type: ignore[arg-type]
        except (httpx.TransportError, httpx.TimeoutException) as exc:
            raise BackendUnavailable(
                f"encoder at {self._base_url} is unreachable: {exc.__class__.__name__}",
                reason="encoder_unavailable",
            ) from exc
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
        vectors = np.asarray(body.embeddings, dtype=np.float32).reshape(-1, body.dim)
        return Embeddings(model_id=body.model, vectors=l2_normalize(vectors))

    async def embed_texts(self, texts: Sequence[str]) -> Embeddings:
        payload = TextEmbedRequest(texts=list(texts)).model_dump()
        return self._to_embeddings(await self._request("POST", "/embed/text", json=payload))

    async def embed_images(self, images: Sequence[bytes]) -> Embeddings:
        files = [("files", (f"image{i}", data, "application/octet-stream"))
                 for i, data in enumerate(images)]
        return self._to_embeddings(await self._request("POST", "/embed/image", files=files))

    async def ping(self) -> None:
        await self._request("GET", "/health")

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
