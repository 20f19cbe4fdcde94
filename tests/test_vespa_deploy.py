"""`clipsearch vespa deploy` against the loopback config server + container (not a live
Vespa): zip, prepareandactivate, the config server's message on failure, the wait."""

from __future__ import annotations

import argparse
import io
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from clipsearch.errors import BackendError, BackendUnavailable, InvalidRequest
from clipsearch.index.vespa import package
from clipsearch.index.vespa.commands import register
from clipsearch.index.vespa.deploy import deploy, wait_until_up, zip_package
from tests.vespa_loopback import LoopbackVespa


@pytest.fixture
def app(tmp_path: Path) -> Path:
    package.write(tmp_path / "app", 512)
    return tmp_path / "app"


@pytest.fixture
def vespa() -> Iterator[LoopbackVespa]:
    with LoopbackVespa(dim=512, deployed=False) as server:
        yield server


def test_zip_holds_the_package(app: Path) -> None:
    with zipfile.ZipFile(io.BytesIO(zip_package(app))) as zf:
        assert sorted(zf.namelist()) == ["schemas/generation_catalog.sd", "schemas/image.sd",
                                         "services.xml"]
    with pytest.raises(InvalidRequest, match=r"no services\.xml"):
        zip_package(app / "schemas")


def test_deploy_activates_and_waits(app: Path, vespa: LoopbackVespa,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    message = deploy(app, vespa.url, vespa.url, wait_s=5, interval_s=0.01)
    assert "prepared and activated" in message
    post = next(r for r in vespa.requests if r.path.endswith("/prepareandactivate"))
    assert post.method == "POST"
    assert vespa.state.deployed
    monkeypatch.setenv("CLIPSEARCH_VESPA_URL", vespa.url)
    monkeypatch.setenv("CLIPSEARCH_VESPA_CONFIG_URL", vespa.url)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["vespa", "deploy", "--dir", str(app), "--wait", "1"])
    assert args.func(args) == 0


def test_config_server_message_is_shown(app: Path, vespa: LoopbackVespa) -> None:
    vespa.fail("POST", "/application/v2/", 400, body={
        "error-code": "INVALID_APPLICATION_PACKAGE",
        "message": "Invalid application: rank profile 'hybrid': unknown feature 'x'"})
    with pytest.raises(BackendError, match="INVALID_APPLICATION_PACKAGE: Invalid application: "
                                           "rank profile 'hybrid'"):
        deploy(app, vespa.url, vespa.url, wait_s=0)
    assert not vespa.state.deployed


def test_lint_runs_before_upload(app: Path, vespa: LoopbackVespa) -> None:
    sd = app / "schemas" / "image.sd"
    sd.write_text(sd.read_text().replace("index: enable-bm25", ""))
    with pytest.raises(InvalidRequest, match="enable-bm25"):
        deploy(app, vespa.url, vespa.url, wait_s=0)
    assert vespa.requests == []
    # without our lint, the (loopback) config server refuses it and says why
    with pytest.raises(BackendError, match="enable-bm25"):
        deploy(app, vespa.url, vespa.url, wait_s=0, lint=False)


def test_wait_has_a_deadline(vespa: LoopbackVespa) -> None:
    now = [0.0]
    with pytest.raises(BackendUnavailable, match=r"did not come up within 10 s .*HTTP 503"):
        wait_until_up(vespa.url, deadline_s=10, interval_s=2,
                      clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    polls = [r for r in vespa.requests if r.path == "/ApplicationStatus"]
    assert len(polls) == 6


def test_unreachable_config_server(app: Path, tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match=r"config server .* not reachable"):
        deploy(app, "http://127.0.0.1:9", "http://127.0.0.1:9", wait_s=0)
    shutil.rmtree(app)
