"""The shared index conformance suite, run against ``VespaIndex`` talking HTTP to the loopback
Vespa (``tests/vespa_loopback.py``). The loopback checks every request against Vespa's
documented formats; a test also fails if the client sent anything Vespa would refuse.
This is NOT a test against a live Vespa (see test_vespa_live.py for that)."""

from __future__ import annotations

import pytest

from clipsearch.index.base import SearchIndex
from clipsearch.index.vespa.client import RetryPolicy, VespaIndex
from tests.index_conformance import IndexConformance, IndexFactory
from tests.vespa_loopback import LoopbackVespa


class TestVespaConformance(IndexConformance):
    @pytest.fixture(scope="class")
    def index_factory(self, loopback_servers: list[LoopbackVespa]) -> IndexFactory:
        async def make(dim: int) -> SearchIndex:
            server = LoopbackVespa(dim=dim).__enter__()
            loopback_servers.append(server)
            return VespaIndex(url=server.url, namespace="clipsearch", dim=dim, timeout_s=5.0,
                              retry=RetryPolicy(attempts=3, initial_s=0.01, max_s=0.05))

        return make

