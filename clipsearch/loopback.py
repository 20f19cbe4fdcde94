"""Loopback helpers shared by the tests and the benchmarks: a free port, and polling a URL
until it answers, bounded by a deadline (no fixed sleeps)."""

from __future__ import annotations

import socket
import subprocess
import threading
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(url: str, deadline_s: float = 60.0, *,
                  proc: subprocess.Popen[bytes] | None = None,
                  thread: threading.Thread | None = None) -> None:
    """Poll ``url`` until it answers 200; fail early if ``proc`` or ``thread`` died."""
    deadline = time.monotonic() + deadline_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}")
        if thread is not None and not thread.is_alive():
            raise AssertionError("the test server thread exited during startup")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.05)  # poll interval, bounded by the deadline
    raise AssertionError(f"{url} did not come up within {deadline_s:.0f} s: {last}")
