"""Servers on loopback for tests: uvicorn serving an app in a thread, plus the free-port and
poll-with-a-deadline helpers of ``clipsearch.loopback``. No fixed sleeps."""

from __future__ import annotations

import threading
from typing import Any

import uvicorn

from clipsearch.loopback import free_port, wait_until_up

__all__ = ["ThreadServer", "free_port", "wait_until_up"]


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
