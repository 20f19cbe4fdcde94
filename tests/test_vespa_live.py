"""Opt-in checks against a REAL Vespa: set VESPA_URL (e.g. http://localhost:8080, after
`docker compose up -d`); optionally VESPA_CONFIG_URL to deploy first. Skipped otherwise.
The shared conformance suite runs against it in its own namespace."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from clipsearch.index.base import SearchIndex
from clipsearch.index.vespa.client import VespaIndex
from tests.index_conformance import IndexConformance, IndexFactory

VESPA_URL = os.environ.get("VESPA_URL", "")
NAMESPACE = "clipsearch-test"
CONTENT_CLUSTER = "clipsearch_content"  # pyvespa's name for the generated content cluster
pytestmark = [
    pytest.mark.live_vespa,
    pytest.mark.skipif(not VESPA_URL, reason="VESPA_URL is not set: no live Vespa to test "
                                             "against (loopback tests cover the client)"),
]


@pytest.fixture(scope="module", autouse=True)
def deployed(tmp_path_factory: pytest.TempPathFactory) -> None:
    config_url = os.environ.get("VESPA_CONFIG_URL")
    if not config_url:
        return
    from clipsearch.index.vespa import package
    from clipsearch.index.vespa.deploy import deploy

    app = Path(tmp_path_factory.mktemp("vespa-app"))
    package.write(app, int(os.environ.get("VESPA_DIM", "16")))
    deploy(app, config_url, VESPA_URL, wait_s=300)


async def wipe(namespace: str) -> None:
    """Remove every image document of the namespace (searches see all namespaces, so the
    suite's "fresh, empty index" means an empty document type)."""
    async with httpx.AsyncClient(base_url=VESPA_URL, timeout=60) as http:
        resp = await http.delete(f"/document/v1/{namespace}/image/docid",
                                 params={"selection": "true", "cluster": CONTENT_CLUSTER})
        assert resp.status_code == 200, resp.text


class TestLiveVespaConformance(IndexConformance):
    """Needs the package deployed with the suite's dimension (VESPA_DIM=16). Destroys every
    document in namespace ``clipsearch-test``: never point it at a cluster you care about."""

    @pytest.fixture(scope="class")
    def index_factory(self) -> IndexFactory:
        async def make(dim: int) -> SearchIndex:
            await wipe(NAMESPACE)
            return VespaIndex(url=VESPA_URL, namespace=NAMESPACE, dim=dim)

        return make
