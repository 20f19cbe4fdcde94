"""Prometheus metrics of one encoder app, in a registry of its own (never the global one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from clipsearch.models.text_cache import TextCache

CONTENT_TYPE = CONTENT_TYPE_LATEST
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class EncoderMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("clipsearch_encoder_requests", "HTTP requests",
                                ["route", "status"], registry=r)
        self.latency = Histogram("clipsearch_encoder_request_seconds", "HTTP request latency",
                                 ["route"], registry=r,
                                 buckets=(.002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5, 10))
        self.batch_requests = Histogram("clipsearch_encoder_batch_requests",
                                        "Requests merged into one forward pass", ["kind"],
                                        buckets=_SIZES, registry=r)
        self.batch_items = Histogram("clipsearch_encoder_batch_items",
                                     "Texts or images in one forward pass", ["kind"],
                                     buckets=_SIZES, registry=r)
        self.items = Counter("clipsearch_encoder_items", "Texts and images embedded", ["kind"],
                             registry=r)
        self._cache_hits = Gauge("clipsearch_encoder_text_cache_hits",
                                 "Text embeddings served from the LRU cache", registry=r)
        self._cache_size = Gauge("clipsearch_encoder_text_cache_entries",
                                 "Texts in the LRU cache", registry=r)

    def observe_batch(self, kind: str, requests: int, items: int) -> None:
        self.batch_requests.labels(kind).observe(requests)
        self.batch_items.labels(kind).observe(items)
        self.items.labels(kind).inc(items)

    def watch_cache(self, cache: TextCache) -> None:
        self._cache_hits.set_function(lambda: cache.hits)
        self._cache_size.set_function(lambda: len(cache))

    def render(self) -> bytes:
        return generate_latest(self.registry)
