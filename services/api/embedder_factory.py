"""Pick the gateway's encoder from settings: the encoder service over HTTP, or in-process."""

from __future__ import annotations

import asyncio
import logging

from clipsearch.embedder import Embedder
from clipsearch.encoder_client import RemoteEmbedder
from clipsearch.errors import ClipsearchError
from clipsearch.settings import Settings

log = logging.getLogger(__name__)


async def open_embedder(settings: Settings) -> tuple[Embedder | None, str | None]:
    """The embedder, or (None, reason) when it cannot be had: lexical search still works."""
    if settings.encoder_url:
        remote = RemoteEmbedder.from_settings(settings)
        try:
            await remote.ping()  # connects (fetches /info) within the short probe timeout
        except ClipsearchError as exc:
            log.warning("encoder not reachable yet (%s); will connect on first use",
                        exc.message)
        return remote, None
    try:
        from clipsearch.models.local import LocalEmbedder
        from clipsearch.models.model import ClipEncoder

        encoder = await asyncio.to_thread(ClipEncoder.from_settings, settings)
        return LocalEmbedder(encoder, settings), None
    except (OSError, ValueError, ClipsearchError) as exc:
        log.error("cannot load model %r: %s", settings.model, exc)  # details for operators
        return None, "the model could not be loaded (the server log says why)"
