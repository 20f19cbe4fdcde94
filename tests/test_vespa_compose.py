"""docker-compose.yml and the Python Dockerfile hold what the stack needs (parsed here; no
Docker engine runs on these machines, so `docker compose up` itself is not tested)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_vespa_service(compose: dict[str, Any]) -> None:
    vespa = compose["services"]["vespa"]
    assert re.fullmatch(r"vespaengine/vespa:8\.\d+\.\d+", vespa["image"]), "pin a tag"
    assert "_" not in vespa["hostname"]
    assert int(vespa["mem_limit"].rstrip("g")) >= 4
    targets = {v.split(":")[1] for v in vespa["volumes"]}
    assert {"/opt/vespa/var", "/opt/vespa/logs"} <= targets
    assert "19071" in " ".join(vespa["healthcheck"]["test"])


def test_startup_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["deploy"]["depends_on"]["vespa"]["condition"] == "service_healthy"
    assert services["deploy"]["command"][:2] == ["vespa", "deploy"]
    assert services["api"]["depends_on"] == {
        "deploy": {"condition": "service_completed_successfully"},
        "encoder": {"condition": "service_healthy"},
    }
    assert "healthcheck" in services["encoder"]
    assert services["feeder"]["profiles"] == ["feed"]
    for name in ("deploy", "encoder", "api", "feeder"):
        env = services[name]["environment"]
        assert env["CLIPSEARCH_BACKEND"] == "vespa"
        assert env["CLIPSEARCH_VESPA_URL"] == "http://vespa:8080"
        assert services[name]["build"]["dockerfile"] == "docker/python.Dockerfile"


def test_dockerfile_uses_cpu_torch_by_default() -> None:
    text = (REPO / "docker" / "python.Dockerfile").read_text()
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in text
    assert 'pip install --index-url "${TORCH_INDEX_URL}"' in text
    assert "COPY vespa-app" in text and 'ENTRYPOINT ["clipsearch"]' in text
