"""Deploy ``vespa-app/`` without the Vespa CLI: zip it, POST it to the config server's
``prepareandactivate``, act on the ``configChangeActions`` of the answer
(``change_actions``: fail on restart/refeed, wait for reindexing), then wait (with a
deadline) until the container answers ``/ApplicationStatus`` (port 8080 is dead until an
application is deployed)."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from clipsearch.errors import BackendError, BackendUnavailable, InvalidRequest
from clipsearch.index.vespa.change_actions import (
    REINDEXING_PATH,
    DeployNeedsAction,
    DeployResponse,
    must_fail,
    reindex_state,
)
from clipsearch.index.vespa.lint import lint_package

DEPLOY_PATH = "/application/v2/tenant/default/prepareandactivate"


def zip_package(root: Path) -> bytes:
    if not (root / "services.xml").is_file():
        raise InvalidRequest(f"{root} is not a Vespa application package (no services.xml)")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(root).as_posix())
    return buf.getvalue()


def zip_files(files: dict[str, str]) -> bytes:
    """A generated package (relative path -> text) as the zip the config server takes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel, text in sorted(files.items()):
            zf.writestr(rel, text)
    return buf.getvalue()


def refuse_lint_problems(problems: Sequence[object]) -> None:
    if problems:
        raise InvalidRequest("the package fails the lint:\n"
                             + "\n".join(f"  {p}" for p in problems), reason="lint")


def activate_checked(config_url: str, package: bytes, *,
                     report: Callable[[str], None] = print) -> DeployResponse:
    """Prepare and activate ``package``, report its config change actions, and raise
    ``DeployNeedsAction`` when one needs a restart or a re-feed (the package is active)."""
    response = prepare_and_activate(config_url, package)
    for line in response.actions.describe():
        report(f"config change action: {line}")
    failure = must_fail(response.actions)
    if failure:
        raise DeployNeedsAction(failure)
    return response


def _reason(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:2000] or f"HTTP {resp.status_code}"
    if isinstance(body, dict) and body.get("message"):
        code = body.get("error-code")
        return f"{code}: {body['message']}" if code else str(body["message"])
    return resp.text[:2000]


def activate(config_url: str, package: bytes, *, timeout_s: float = 120.0,
             client: httpx.Client | None = None) -> str:
    """POST the zipped package; returns the config server's message."""
    return prepare_and_activate(config_url, package, timeout_s=timeout_s,
                                client=client).message


def prepare_and_activate(config_url: str, package: bytes, *, timeout_s: float = 120.0,
                         client: httpx.Client | None = None) -> DeployResponse:
    """POST the zipped package; returns the config server's message and change actions."""
    own = client is None
    http = client or httpx.Client(timeout=timeout_s)
    try:
        resp = http.post(f"{config_url.rstrip('/')}{DEPLOY_PATH}", content=package,
                         headers={"Content-Type": "application/zip"})
    except httpx.TransportError as exc:
        raise BackendUnavailable(f"the Vespa config server at {config_url} is not reachable: "
                                 f"{exc}") from exc
    finally:
        if own:
            http.close()
    if resp.status_code != 200:
        raise BackendError(f"the config server refused the package (HTTP {resp.status_code}): "
                           f"{_reason(resp)}", reason="deploy_failed")
    try:
        return DeployResponse.model_validate(resp.json())
    except ValueError:
        return DeployResponse(message=_reason(resp))


def wait_for_reindexing(config_url: str, package: bytes, targets: set[tuple[str, str]], *,
                        deadline_s: float, interval_s: float = 10.0,
                        report: Callable[[str], None] = print,
                        clock: Callable[[], float] = time.monotonic,
                        sleep: Callable[[float], None] = time.sleep) -> None:
    """Self-managed reindexing (docs: operations/reindexing): poll ``/reindexing`` until the
    config server marks every (cluster, document type) ready, deploy the same package again
    to start it, then poll until each is ``successful`` (``failed`` raises)."""
    end = clock() + deadline_s
    url = f"{config_url.rstrip('/')}{REINDEXING_PATH}"
    redeployed = False
    last: dict[tuple[str, str], tuple[str, str]] = {}
    with httpx.Client(timeout=30.0) as http:
        while True:
            try:
                resp = http.get(url)
                status = resp.json() if resp.status_code == 200 else {}
            except (httpx.TransportError, ValueError):
                status = {}
            states = {t: reindex_state(status, *t) for t in sorted(targets)}
            if states != last:
                for (cluster, doc_type), (phase, detail) in states.items():
                    report(f"reindexing {cluster}/{doc_type}: {phase} {detail}".rstrip())
                last = states
            failed = [f"{c}/{t}: {d}" for (c, t), (ph, d) in states.items() if ph == "failed"]
            if failed:
                raise BackendError("Vespa's reindexing failed: " + "; ".join(failed),
                                   reason="reindex_failed")
            phases = {ph for ph, _ in states.values()}
            if phases == {"successful"}:
                return
            if not redeployed and "pending" not in phases and "ready" in phases:
                report("reindexing is ready: deploying again to start it")
                prepare_and_activate(config_url, package, client=http)
                redeployed = True
            if clock() >= end:
                raise BackendUnavailable(
                    f"reindexing did not finish within {deadline_s:.0f} s: "
                    + "; ".join(f"{c}/{t} {ph}" for (c, t), (ph, _) in states.items())
                    + f" (follow it at {url})")
            sleep(interval_s)


def wait_until_up(url: str, *, deadline_s: float = 300.0, interval_s: float = 2.0,
                  clock: Callable[[], float] = time.monotonic,
                  sleep: Callable[[float], None] = time.sleep) -> None:
    """Poll ``/ApplicationStatus`` until HTTP 200 or the deadline passes."""
    end = clock() + deadline_s
    last = "no answer yet"
    with httpx.Client(timeout=min(10.0, max(interval_s, 1.0))) as http:
        while True:
            try:
                resp = http.get(f"{url.rstrip('/')}/ApplicationStatus")
                if resp.status_code == 200:
                    return
                last = f"HTTP {resp.status_code}"
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if clock() >= end:
                raise BackendUnavailable(
                    f"the Vespa container at {url} did not come up within {deadline_s:.0f} s "
                    f"(last: {last})")
            sleep(interval_s)


def deploy(root: Path, config_url: str, url: str, *, wait_s: float = 300.0,
           lint: bool = True, interval_s: float = 2.0, reindex_wait_s: float = 0.0,
           reindex_interval_s: float = 10.0,
           report: Callable[[str], None] = print) -> str:
    """Lint, zip, activate, act on the change actions, wait. Returns the config server's
    message. Raises ``DeployNeedsAction`` when Vespa needs a restart or a re-feed (the
    package is active then); waits up to ``reindex_wait_s`` for a reindexing (0: report it
    and return, the old index terms serve meanwhile)."""
    if lint:
        refuse_lint_problems(lint_package(root))
    package = zip_package(root)
    response = activate_checked(config_url, package, report=report)
    if wait_s > 0:
        wait_until_up(url, deadline_s=wait_s, interval_s=interval_s)
    if response.actions.reindex:
        if reindex_wait_s > 0:
            wait_for_reindexing(config_url, package, response.actions.reindex_targets(),
                                deadline_s=reindex_wait_s, interval_s=reindex_interval_s,
                                report=report)
        else:
            report("reindexing needed: it starts when the config server marks it ready and "
                   "the package is deployed again (rerun with --reindex-wait SECONDS to do "
                   f"that and wait; status: {config_url.rstrip('/')}{REINDEXING_PATH})")
    return response.message
