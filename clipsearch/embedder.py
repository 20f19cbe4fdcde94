"""What the gateway and the feeder need from an encoder, local or remote."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from clipsearch.embeddings import Embeddings


@runtime_checkable
class Embedder(Protocol):
    """Turns query text or encoded image bytes into unit-length CLIP embeddings.

    Implementations: ``clipsearch.models.local.LocalEmbedder`` (in-process model) and
    ``clipsearch.encoder_client.RemoteEmbedder`` (the encoder service over HTTP).
    Bad images raise ``InvalidImage`` / ``ImageTooLarge``; an unreachable encoder raises
    ``BackendUnavailable``.
    """

    @property
    def model_id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    async def embed_texts(self, texts: Sequence[str]) -> Embeddings: ...

    async def embed_images(self, images: Sequence[bytes]) -> Embeddings: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...
