"""Helpers for the browser test: find Chromium, launch it headless through Selenium with the
Debian chromedriver, serve an ASGI app with uvicorn on a loopback port in a thread, and wait
for page states with a deadline (never a fixed sleep)."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx
import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

T = TypeVar("T")

# From this machine's notes: no sandbox (root in a container), no GPU, and nothing that phones
# home (the machine has no network beyond loopback and PyPI).
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1280,900",
)
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
DRIVER_NAMES = ("chromedriver",)
WAIT_S = 20.0


@dataclass(frozen=True)
class BrowserPaths:
    chromium: str
    chromedriver: str


def find_browser() -> BrowserPaths | None:
    """Chromium and its chromedriver from PATH (``scripts/install-browser.sh``), or None."""
    chromium = next((p for n in CHROMIUM_NAMES if (p := shutil.which(n))), None)
    driver = next((p for n in DRIVER_NAMES if (p := shutil.which(n))), None)
    if chromium is None or driver is None:
        return None
    return BrowserPaths(chromium=chromium, chromedriver=driver)


def launch(paths: BrowserPaths, user_data_dir: Path) -> webdriver.Chrome:
    """Headless Chromium with a fresh profile; the explicit driver path keeps Selenium Manager
    from trying to download one."""
    options = webdriver.ChromeOptions()
    options.binary_location = paths.chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={user_data_dir}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(paths.chromedriver))
    driver.set_page_load_timeout(WAIT_S)
    driver.set_script_timeout(WAIT_S)
    return driver


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], T | None], what: str,
             timeout_s: float = WAIT_S) -> T:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` at the
    deadline, including the page's status line to say where it got stuck."""
    try:
        result = cast(T, WebDriverWait(driver, timeout_s, poll_frequency=0.05).until(
            condition, message=what))
    except Exception as exc:  # TimeoutException: add what the page shows
        status = driver.execute_script(
            "const s = document.getElementById('status'); return s ? s.textContent : null;")
        raise AssertionError(f"timed out waiting for {what}; status line: {status!r}") from exc
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThreadServer:
    """uvicorn serving ``app`` on 127.0.0.1:``port`` in a daemon thread; stopped by flag."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not self.thread.is_alive():
                raise AssertionError("the test server thread exited during startup")
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)  # poll interval, bounded by the deadline
        self.__exit__()
        raise AssertionError(f"{self.url}/health did not answer within 60 s")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
