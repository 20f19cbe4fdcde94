"""``clipsearch vespa deploy`` acts on the ``configChangeActions`` of the config server's
answer (issue 17 item 5): restart and refeed fail (exit 2) saying what to do, reindexing is
waited for (ready -> deploy again -> successful) within a deadline. Loopback only."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clipsearch.errors import BackendError, BackendUnavailable
from clipsearch.index.vespa import package
from clipsearch.index.vespa.change_actions import (
    ChangeActions,
    DeployNeedsAction,
    reindex_state,
)
from clipsearch.index.vespa.commands import register
from clipsearch.index.vespa.deploy import deploy
from tests.vespa_loopback import LoopbackVespa

SERVICE = {"serviceName": "searchnode", "serviceType": "searchnode",
           "configId": "clipsearch_content/search/cluster.clipsearch_content/0",
           "hostName": "vespa-container"}
REINDEX = {"restart": [], "refeed": [], "reindex": [{
    "name": "indexing-change", "documentType": "image", "clusterName": "clipsearch_content",
    "messages": ["Document type 'image': Field 'caption' changed: indexing script: "
                 "'{ input caption | tokenize normalize stem:\"BEST\" | index caption; }' -> "
                 "'{ \"en\" | set_language; input caption | ... }'"],
    "services": [SERVICE]}]}


@pytest.fixture
def app(tmp_path: Path) -> Path:
    package.write(tmp_path / "app", 8)
    return tmp_path / "app"


@pytest.fixture
def vespa() -> Iterator[LoopbackVespa]:
    with LoopbackVespa(dim=8, deployed=False) as server:
        yield server


def _status(**ready: Any) -> dict[str, Any]:
    return {"enabled": True, "clusters": {"clipsearch_content": {
        "pending": {"image": 3} if not ready else {}, "ready": {"image": ready}}}}


def _deploys(vespa: LoopbackVespa) -> int:
    return sum(1 for r in vespa.requests if r.path.endswith("/prepareandactivate"))


def test_no_actions_is_a_plain_deploy(app: Path, vespa: LoopbackVespa) -> None:
    lines: list[str] = []
    assert "activated" in deploy(app, vespa.url, vespa.url, wait_s=0, report=lines.append)
    assert lines == [] and _deploys(vespa) == 1


@pytest.mark.parametrize(("kind", "expected"), [
    ("restart", "restart these services .* searchnode@vespa-container"),
    ("refeed", "feed every document of type image again"),
])
def test_restart_and_refeed_fail_with_what_to_do(app: Path, vespa: LoopbackVespa, kind: str,
                                                 expected: str) -> None:
    vespa.state.change_actions = {"restart": [], "refeed": [], "reindex": [],
                                  kind: [{"name": "field-type-change",
                                          "documentType": "image",
                                          "clusterName": "clipsearch_content",
                                          "messages": ["Field 'embedding' changed"],
                                          "services": [SERVICE]}]}
    lines: list[str] = []
    with pytest.raises(DeployNeedsAction, match=expected) as info:
        deploy(app, vespa.url, vespa.url, wait_s=0, report=lines.append)
    assert "ACTIVE" in info.value.message and "Field 'embedding' changed" in info.value.message
    assert lines == [f"config change action: {kind}: document type image, cluster "
                     "clipsearch_content, services searchnode@vespa-container: "
                     "Field 'embedding' changed"]


def test_cli_exits_2_on_restart(app: Path, vespa: LoopbackVespa,
                                monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    vespa.state.change_actions = {"restart": [{"clusterName": "c", "messages": ["x"],
                                               "services": [SERVICE]}]}
    monkeypatch.setenv("CLIPSEARCH_VESPA_URL", vespa.url)
    monkeypatch.setenv("CLIPSEARCH_VESPA_CONFIG_URL", vespa.url)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["vespa", "deploy", "--dir", str(app), "--wait", "0"])
    assert args.func(args) == 2
    assert "restart these services" in capsys.readouterr().err


def test_reindex_without_wait_is_reported(app: Path, vespa: LoopbackVespa) -> None:
    vespa.state.change_actions = REINDEX
    lines: list[str] = []
    deploy(app, vespa.url, vespa.url, wait_s=0, report=lines.append)
    assert lines[0].startswith("config change action: reindex: document type image")
    assert "rerun with --reindex-wait" in lines[-1] and _deploys(vespa) == 1


def test_reindex_is_waited_for(app: Path, vespa: LoopbackVespa) -> None:
    vespa.state.change_actions = REINDEX
    vespa.state.reindexing = [
        _status(),  # pending
        _status(readyMillis=2000, startedMillis=1000, state="successful"),  # an OLD run
        _status(readyMillis=2000),
        _status(readyMillis=2000, startedMillis=2100, state="running", progress=0.5),
        _status(readyMillis=2000, startedMillis=2100, endedMillis=2200, state="successful"),
    ]
    lines: list[str] = []
    deploy(app, vespa.url, vespa.url, wait_s=0, reindex_wait_s=30, reindex_interval_s=0.0,
           report=lines.append)
    assert _deploys(vespa) == 2  # the second deploy starts the reindexing
    phases = [ln.split(": ", 1)[1] for ln in lines if ln.startswith("reindexing clip")]
    assert phases[0].startswith("pending") and phases[1] == "ready"
    assert "running progress 0.5" in phases and phases[-1] == "successful"


def test_reindex_failure_and_deadline(app: Path, vespa: LoopbackVespa) -> None:
    vespa.state.change_actions = REINDEX
    vespa.state.reindexing = [_status(readyMillis=5, startedMillis=6, state="failed",
                                      message="disk full")]
    with pytest.raises(BackendError, match=r"reindexing failed: .*disk full"):
        deploy(app, vespa.url, vespa.url, wait_s=0, reindex_wait_s=30,
               reindex_interval_s=0.0, report=lambda _: None)
    vespa.state.change_actions = REINDEX
    vespa.state.reindexing = [_status()]
    with pytest.raises(BackendUnavailable, match="did not finish within 0 s: "
                                                 "clipsearch_content/image pending"):
        deploy(app, vespa.url, vespa.url, wait_s=0, reindex_wait_s=0.001,
               reindex_interval_s=0.01, report=lambda _: None)


def test_parse_and_state_edge_cases() -> None:
    actions = ChangeActions.model_validate(REINDEX)
    assert actions.reindex_targets() == {("clipsearch_content", "image")}
    assert not actions.empty and ChangeActions().empty
    assert reindex_state({}, "c", "t")[0] == "pending"
    assert reindex_state({"clusters": {"c": {"ready": {"t": {}}}}}, "c", "t")[0] == "pending"
