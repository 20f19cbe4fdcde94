"""The web page at ``/``, driven in headless Chromium (Selenium + the Debian chromedriver)
against the real gateway serving a real small index: the sample dataset fed with the tiny CLIP.

Install the browser with ``scripts/install-browser.sh``; without it these tests skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from clipsearch.settings import Settings
from feeder.commands import FeedRequest, run_feed
from services.api.app import create_app
from tests.browser import find_browser, launch, wait_for
from tests.servers import ThreadServer

PAGE_LIMIT = 24  # the page asks for this many hits

pytestmark = pytest.mark.skipif(
    find_browser() is None,
    reason="chromium and chromedriver are not installed (run scripts/install-browser.sh)")

CARDS_JS = """
return [...document.querySelectorAll('#results article.hit')].map((c) => ({
  id: c.dataset.id,
  scores: c.querySelector('.scores').textContent,
  captions: [...c.querySelectorAll('li')].map((li) => li.textContent),
}));
"""
STATUS_JS = """
const s = document.getElementById('status');
return {text: s.textContent, error: s.classList.contains('error')};
"""


@pytest.fixture(scope="module")
def server(tiny_clip_dir: Path, sample_dataset: Any,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadServer]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("web-data"), model=str(tiny_clip_dir),
                        encoder_url="")
    report = run_feed(settings, FeedRequest(source=sample_dataset.manifest, format="generic",
                                            progress=False))
    assert report.indexed == len(sample_dataset.records), report.summary()
    with ThreadServer(create_app(settings)) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chrome]:
    paths = find_browser()
    assert paths is not None
    driver = launch(paths, tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture()
def page(browser: Chrome, server: ThreadServer) -> Chrome:
    browser.get(f"{server.url}/")
    wait_for(browser, lambda d: d.execute_script("return document.readyState") == "complete",
             "the page to load")
    return browser


# --- page helpers ------------------------------------------------------------------------


def cards(driver: WebDriver) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = driver.execute_script(CARDS_JS)
    return found


def status(driver: WebDriver) -> dict[str, Any]:
    found: dict[str, Any] = driver.execute_script(STATUS_JS)
    return found


def wait_status(driver: WebDriver, *parts: str) -> dict[str, Any]:
    """Wait until the status line is a finished search (not "searching…") containing parts."""
    def done(d: WebDriver) -> dict[str, Any] | None:
        s = status(d)
        text = s["text"]
        return s if text and "searching" not in text and all(p in text for p in parts) else None
    return wait_for(driver, done, f"a status line containing {parts}")


def type_query(driver: WebDriver, text: str) -> None:
    box = driver.find_element(By.ID, "q")
    box.clear()
    box.send_keys(text)


def pick_mode(driver: WebDriver, mode: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f"input[name=mode][value={mode}]").click()


def api_ids(server: ThreadServer, **params: Any) -> list[str]:
    r = httpx.get(f"{server.url}/search", params={"limit": PAGE_LIMIT, **params}, timeout=30)
    assert r.status_code == 200, r.text
    return [h["id"] for h in r.json()["hits"]]


def console_errors(driver: Chrome) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


# --- tests -------------------------------------------------------------------------------


def test_query_shows_result_cards(page: Chrome, server: ThreadServer, tmp_path: Path,
                                  word_category: dict[str, str]) -> None:
    query = " ".join(list(word_category)[:2])
    page.get_log("browser")  # drop anything from earlier pages
    type_query(page, query)
    page.find_element(By.ID, "go").click()
    s = wait_status(page, "results", "hybrid")
    assert not s["error"], s
    shown = cards(page)
    assert shown, "no result cards"
    assert [c["id"] for c in shown] == api_ids(server, q=query, mode="hybrid")
    assert all(c["captions"] and "score" in c["scores"] for c in shown)
    # thumbnails really load (served by /images/{id}?size=256)
    first_img = page.find_element(By.CSS_SELECTOR, "#results article.hit img")
    wait_for(page, lambda d: d.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth > 0", first_img),
        "the first thumbnail to load")
    assert page.find_element(By.CSS_SELECTOR, "#results article.hit").is_displayed()
    assert console_errors(page) == []
    shot = tmp_path / "results.png"
    assert page.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_switching_mode_changes_results(page: WebDriver, server: ThreadServer,
                                        word: str) -> None:
    type_query(page, word)
    pick_mode(page, "lexical")  # a mode change re-runs the search
    wait_status(page, "· lexical ·")
    lexical = cards(page)
    assert [c["id"] for c in lexical] == api_ids(server, q=word, mode="lexical")
    assert all("vector –" in c["scores"] for c in lexical)  # lexical leg only

    pick_mode(page, "vector")
    wait_status(page, "· vector ·")
    vector = cards(page)
    assert [c["id"] for c in vector] == api_ids(server, q=word, mode="vector")
    assert all("lexical –" in c["scores"] for c in vector)  # vector leg only
    assert [(c["id"], c["scores"]) for c in vector] != [(c["id"], c["scores"]) for c in lexical]


def test_more_like_this_shows_similar_images(page: WebDriver, server: ThreadServer,
                                             word: str) -> None:
    type_query(page, word)
    page.find_element(By.ID, "go").click()
    wait_status(page, "results", "hybrid")
    first = page.find_element(By.CSS_SELECTOR, "#results article.hit")
    source_id = first.get_attribute("data-id")
    assert source_id
    first.find_element(By.CSS_SELECTOR, "button.more-like-this").click()
    wait_status(page, f"like {source_id}", "· vector ·")
    similar = [c["id"] for c in cards(page)]
    assert similar and source_id not in similar  # the page asks to leave the image out
    assert similar == api_ids(server, image_id=source_id, mode="vector", exclude_image="true")
    assert page.find_element(By.ID, "q").get_attribute("value") == ""
    assert page.find_element(By.CSS_SELECTOR, "input[name=mode][value=vector]").is_selected()


def test_uploaded_image_finds_itself(page: WebDriver, sample_dataset: Any) -> None:
    rec = sample_dataset.records[len(sample_dataset.records) // 2]
    page.find_element(By.ID, "upload").send_keys(str(sample_dataset.root / rec.file))
    wait_status(page, "like the uploaded image")
    shown = cards(page)
    assert shown[0]["id"] == f"sample:{rec.id}"
    assert "vector 1.000" in shown[0]["scores"]


def test_facets_show_counts_per_category(page: WebDriver, server: ThreadServer,
                                         word_category: dict[str, str]) -> None:
    word, category = next(iter(word_category.items()))
    type_query(page, word)
    pick_mode(page, "lexical")
    wait_status(page, "· lexical ·")
    page.find_element(By.ID, "facets").click()
    page.find_element(By.ID, "go").click()
    text = wait_for(page, lambda d: d.find_element(By.ID, "facet-box").text, "facet counts")
    r = httpx.get(f"{server.url}/search", params={"q": word, "mode": "lexical",
                                                  "facets": "true", "limit": PAGE_LIMIT})
    assert r.status_code == 200, r.text
    for value, n in r.json()["facets"]["category"].items():
        assert f"{value} ({n})" in text, text
    assert f"category: {category} (" in text


@pytest.mark.parametrize(("field", "value", "mentions"), [
    ("dataset", 'bad"value', "dataset"),
    ("q", "x" * 1001, "q"),
])
def test_bad_request_shows_an_error_not_a_blank_page(page: WebDriver, field: str, value: str,
                                                     mentions: str, tmp_path: Path,
                                                     word: str) -> None:
    type_query(page, word)
    page.find_element(By.ID, "go").click()
    wait_status(page, "results")
    assert cards(page)
    box = page.find_element(By.ID, field)
    box.clear()
    # a long value goes in through script: send_keys of 1000 characters is slow
    page.execute_script("arguments[0].value = arguments[1];", box, value)
    page.find_element(By.ID, "go").click()
    s = wait_for(page, lambda d: (st := status(d))["error"] and st, "an error message")
    assert s["text"].startswith("Error: ") and mentions in s["text"], s
    assert len(s["text"]) > len("Error: ") + 5
    assert page.find_element(By.ID, "status").is_displayed()
    assert cards(page) == []  # old results are cleared, not left standing as if current
    assert page.find_element(By.ID, "search-form").is_displayed()  # the page still works
    page.save_screenshot(str(tmp_path / f"error-{field}.png"))


def test_find_in_image_overlays_the_heatmap(page: WebDriver, word: str) -> None:
    type_query(page, word)
    page.find_element(By.ID, "go").click()
    wait_status(page, "results", "hybrid")
    first = page.find_element(By.CSS_SELECTOR, "#results article.hit")
    source_id = first.get_attribute("data-id")
    first.find_element(By.CSS_SELECTOR, "button.find-in-image").click()
    wait_status(page, f"in {source_id}", "best box")
    img = first.find_element(By.TAG_NAME, "img")
    assert (img.get_attribute("src") or "").startswith("data:image/png")
    assert first.find_element(By.CSS_SELECTOR, "button.find-in-image").text == "Show image"


def test_a_shared_link_runs_its_search(browser: Chrome, server: ThreadServer,
                                       word: str) -> None:
    browser.get(f"{server.url}/?q={word}&mode=lexical")
    found = wait_status(browser, "results", "lexical")
    assert found["text"]
    assert [c["id"] for c in cards(browser)] == api_ids(server, q=word, mode="lexical",
                                                         limit=24)


def test_matched_caption_words_are_bold(browser: Chrome, server: ThreadServer,
                                        word: str) -> None:
    """The page bolds the API's highlight spans (text nodes, no markup from the data)."""
    from clipsearch.highlights import Analyzer

    browser.get(f"{server.url}/?q={word}&mode=lexical")
    wait_status(browser, "results", "lexical")
    bold = browser.execute_script(
        "return [...document.querySelectorAll('#results li b.hl')].map((b) => b.textContent)")
    analyzer = Analyzer()
    assert bold and {analyzer.term(b) for b in bold} == {analyzer.term(word)}
    api = httpx.get(f"{server.url}/search", params={"q": word, "mode": "lexical",
                                                    "limit": PAGE_LIMIT}, timeout=30).json()
    # the caption text itself is unchanged by the bolding
    assert [c["captions"] for c in cards(browser)] == [h["captions"][:3] for h in api["hits"]]
