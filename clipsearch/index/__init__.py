"""Index engines behind one protocol; ``open_index`` picks one from settings."""

from __future__ import annotations

from clipsearch.index.base import SearchIndex
from clipsearch.settings import Backend, Settings

__all__ = ["SearchIndex", "open_index"]


def open_index(settings: Settings) -> SearchIndex:
    """Construct (but do not connect) the engine named by ``settings.backend``."""
    if settings.backend == Backend.vespa:
        from clipsearch.index.vespa.generations import GenerationalVespaIndex

        return GenerationalVespaIndex.from_settings(settings)
    from clipsearch.index.embedded_generations import GenerationalEmbeddedIndex

    return GenerationalEmbeddedIndex.from_settings(settings)
