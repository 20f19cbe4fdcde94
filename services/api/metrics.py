"""Prometheus metrics of one gateway instance (a registry per app, not the global one)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass
class ApiMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "clipsearch_http_requests", "HTTP requests by route and status",
            ["route", "method", "status"], registry=self.registry,
        )
        self.searches = Counter(
            "clipsearch_searches", "Search requests by mode and outcome",
            ["mode", "status"], registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "clipsearch_search_stage_seconds", "Latency of each search stage",
            ["mode", "stage"], buckets=_BUCKETS, registry=self.registry,
        )
