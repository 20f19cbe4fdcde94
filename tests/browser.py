"""Helpers for the browser test: find Chromium, launch it headless through Selenium with the
Debian chromedriver, and wait for page states with a deadline (never a fixed sleep)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast

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


