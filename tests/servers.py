"""Servers on loopback for tests: a free port, polling a URL with a deadline, and uvicorn
serving an app in a thread. No fixed sleeps: every wait is a poll bounded by a deadline."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from typing import Any

import httpx
import uvicorn


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


class ThreadServer:
    """uvicorn serving ``app`` on 127.0.0.1:``port`` in a daemon thread; ``with`` waits for
    ``/health`` and stops the server by flag on exit."""

    def __init__(self, app: Any, port: int | None = None, *, deadline_s: float = 60.0) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.deadline_s = deadline_s
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        try:
            wait_until_up(f"{self.url}/health", self.deadline_s, thread=self.thread)
        except AssertionError:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
