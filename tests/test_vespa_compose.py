"""docker-compose.yml and the Python Dockerfile hold what the stack needs (parsed here; no
Docker engine runs on these machines, so `docker compose up` itself is not tested)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PYTHON_SERVICES = ("deploy", "model", "encoder", "api", "feeder")


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
    assert all(p.startswith("127.0.0.1:") for p in vespa["ports"])


def test_the_python_image_is_built_once(compose: dict[str, Any]) -> None:
    services = compose["services"]
    builders = [name for name, s in services.items() if "build" in s]
    assert builders == ["python-image"]
    assert services["python-image"]["build"]["dockerfile"] == "docker/python.Dockerfile"
    for name in (*PYTHON_SERVICES, "deploy-cluster"):
        assert services[name]["image"] == services["python-image"]["image"], name
        assert services[name]["pull_policy"] == "never", name  # never pulled: built here


def test_startup_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    done = {"condition": "service_completed_successfully"}
    assert services["deploy"]["depends_on"]["vespa"]["condition"] == "service_healthy"
    assert services["deploy"]["depends_on"]["python-image"] == done
    assert services["deploy"]["command"][:2] == ["vespa", "deploy"]
    assert services["model"]["depends_on"] == {"python-image": done}
    assert services["encoder"]["depends_on"] == {"model": done}
    assert services["api"]["depends_on"] == {
        "deploy": done, "encoder": {"condition": "service_healthy"}}
    assert "healthcheck" in services["encoder"]
    assert services["feeder"]["profiles"] == ["feed"]
    for name in PYTHON_SERVICES:
        env = services[name]["environment"]
        assert env["CLIPSEARCH_BACKEND"] == "vespa"
        assert env["CLIPSEARCH_VESPA_URL"].endswith("http://vespa:8080}")


def test_the_model_is_fetched_once_before_the_encoder(compose: dict[str, Any]) -> None:
    services = compose["services"]
    model = services["model"]
    assert model["entrypoint"] == ["python", "-m", "clipsearch.models.prefetch"]
    assert model["environment"]["HF_HUB_OFFLINE"] == "${HF_HUB_OFFLINE:-0}"
    for name in ("encoder", "api", "feeder", "deploy"):
        assert services[name]["environment"]["HF_HUB_OFFLINE"] == "1", name
        assert "clipsearch-data:/data" in services[name]["volumes"], name
    assert "clipsearch-data:/data" in model["volumes"]  # the cache (HF_HOME=/data/hf)
    # the encoder no longer needs minutes of grace for a download
    health = services["encoder"]["healthcheck"]
    assert health["retries"] * int(health["interval"].rstrip("s")) <= 180


def test_api_is_not_published_on_every_interface_by_default(compose: dict[str, Any]) -> None:
    api = compose["services"]["api"]
    assert api["ports"] == ["${API_BIND:-127.0.0.1}:8000:8000"]
    assert api["environment"]["CLIPSEARCH_API_KEY"] == "${CLIPSEARCH_API_KEY:-}"
    readme = (REPO / "README.md").read_text()
    assert "API_BIND=0.0.0.0" in readme and "CLIPSEARCH_API_KEY" in readme


def test_cluster_profile(compose: dict[str, Any]) -> None:
    services = compose["services"]
    cluster = {n: s for n, s in services.items() if "cluster" in s.get("profiles", [])}
    assert set(cluster) == {"vespa-config-0", "vespa-content-0", "vespa-content-1",
                            "vespa-container-0", "deploy-cluster"}
    assert cluster["vespa-config-0"]["command"] == "configserver,services"
    for name in ("vespa-content-0", "vespa-content-1", "vespa-container-0"):
        assert cluster[name]["command"] == "services"
        assert cluster[name]["depends_on"]["vespa-config-0"]["condition"] == "service_healthy"
    for name, s in cluster.items():
        if name != "deploy-cluster":
            assert s["image"] == services["vespa"]["image"]
            assert s["environment"]["VESPA_CONFIGSERVERS"] == "vespa-config-0.vespanet"
            assert s["hostname"] == f"{name}.vespanet" and "_" not in s["hostname"]
    assert "/app/vespa-app-cluster" in cluster["deploy-cluster"]["command"]


def test_dockerfile_uses_cpu_torch_by_default() -> None:
    text = (REPO / "docker" / "python.Dockerfile").read_text()
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in text
    assert 'pip install --index-url "${TORCH_INDEX_URL}"' in text
    assert "COPY vespa-app ./vespa-app" in text and 'ENTRYPOINT ["clipsearch"]' in text
    assert "COPY vespa-app-cluster ./vespa-app-cluster" in text


def test_prefetch_loads_the_model_and_checks_the_dimension(
        tiny_clip_dir: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from transformers import CLIPConfig

    from clipsearch.models.prefetch import main

    dim = CLIPConfig.from_pretrained(tiny_clip_dir).projection_dim
    monkeypatch.setenv("CLIPSEARCH_EMBEDDING_DIM", str(dim))
    assert main([str(tiny_clip_dir)]) == 0
    assert f"embedding dim {dim}" in capsys.readouterr().out
    monkeypatch.setenv("CLIPSEARCH_EMBEDDING_DIM", str(dim + 1))
    assert main([str(tiny_clip_dir)]) == 2
    assert f"--dim {dim}" in capsys.readouterr().err
    assert main([str(tiny_clip_dir / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err
