"""Deploy ``vespa-app/`` without the Vespa CLI: zip it, POST it to the config server's
``prepareandactivate``, then wait (with a deadline) until the container answers
``/ApplicationStatus`` (port 8080 is dead until an application is deployed)."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx

from clipsearch.errors import BackendError, BackendUnavailable, InvalidRequest
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
    return _reason(resp)


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
           lint: bool = True, interval_s: float = 2.0) -> str:
    """Lint, zip, activate, wait. Returns the config server's message."""
    if lint:
        problems = lint_package(root)
        if problems:
            raise InvalidRequest("the package fails the lint:\n"
                                 + "\n".join(f"  {p}" for p in problems), reason="lint")
    message = activate(config_url, zip_package(root))
    if wait_s > 0:
        wait_until_up(url, deadline_s=wait_s, interval_s=interval_s)
    return message
