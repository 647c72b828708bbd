"""The page at /ui in a real headless Chromium (Debian chromium + chromium-driver, through selenium).

Needs the anomaly records of #12 (``GET /anomalies``, ``GET /sequences/{id}``, the feedback route): skips
where the app has none. Log lines are planted with markup in them; they must show as text and run nothing.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from model.preprocess import preprocess
from model.vocab import build_vocabulary
from service.app import create_app
from service.settings import ServiceSettings
from tests.binaries import require_binary
from tests.service.delivery_helpers import KeywordScorer, free_port, wait_for

TOKEN = "ui-test-token"
EVIL = [
    "<script>window.__pwned = 'script'</script> disk failure on blk_5",
    "<img src=x onerror=\"window.__pwned = 'img'\"> checksum passed on blk_5",
    "ordinary line of blk_5",
]


NOVEL = "fan 7 failed on blk_6"  # a template outside the vocabulary below; the keyword model calls it normal


class VocabularyScorer(KeywordScorer):
    """The keyword model with a training vocabulary holding every template of EVIL and of ORDINARY lines."""

    vocabulary = build_vocabulary([([preprocess(m) for m in [*EVIL, "ordinary line of blk_6"]], 0)])


STEPS = ["opened file for blk_7", "wrote data for blk_7"]


class CountScorer(KeywordScorer):
    """The keyword model with a vocabulary of whole sessions and the count rule on: each step once per session."""

    vocabulary = replace(build_vocabulary([([preprocess(m) for m in STEPS], 0)], sessions=True), count_rule=True)


@pytest.fixture
def server(redis_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    settings = ServiceSettings(
        redis_url=redis_url,
        checkpoint=tmp_path,
        sweep_interval_s=0.05,
        max_batch_wait_ms=5,
        auth_token=TOKEN,
        novelty_warmup_s=0,
    )
    scorer = getattr(request, "param", VocabularyScorer)
    app = create_app(settings, scorer=scorer("failure"))  # not "error": the <img> line says onerror
    if "/anomalies" not in app.openapi()["paths"]:
        pytest.skip("the page reads the anomaly records of #12 (GET /anomalies), which this app does not have")
    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _ready(url), timeout=30, what="the service")
    yield url
    uv.should_exit = True
    thread.join(timeout=30)


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/health/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    chromium = require_binary("chromium", "chromium-browser")
    driver_path = require_binary("chromedriver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1200,900",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def test_feed_window_page_and_feedback_in_chromium(server: str, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    api = httpx.Client(base_url=server, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert api.post("/logs", json={"lines": [{"message": m} for m in EVIL]}).status_code == 200
    window = api.post("/sequences/blk_5/close").json()["id"]
    wait_for(lambda: [r for r in api.get("/anomalies").json()["items"] if r["id"] == window], what="the record")

    wait = WebDriverWait(browser, 20)
    browser.get(server + "/ui")
    token = wait.until(ec.visibility_of_element_located((By.ID, "token")))  # auth on: asked once
    token.send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#token-form button").click()
    row = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, f'#feed tr[data-window="{window}"]')))
    assert "disk failure on blk_5" in row.text  # the top line
    assert browser.execute_script("return sessionStorage.getItem('logllm-token')") == TOKEN

    row.find_element(By.TAG_NAME, "a").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#w-lines li")) == len(EVIL))
    shown = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#w-lines li")]
    assert shown == EVIL  # the markup is shown as text, character for character
    assert browser.find_elements(By.CSS_SELECTOR, "#w-lines img, #w-lines script") == []
    shaded = [li.get_attribute("title") for li in browser.find_elements(By.CSS_SELECTOR, "#w-lines li")]
    screenshot_dir = Path(os.environ.get("LOGLLM_SCREENSHOT_DIR") or tmp_path)
    browser.save_screenshot(str(screenshot_dir / "ui-window.png"))

    browser.find_element(By.ID, "b-normal").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "w-feedback"), "saved: normal"))
    record = api.get(f"/sequences/{window}").json()
    assert record["feedback"]["label"] == "normal"
    assert browser.execute_script("return window.__pwned === undefined")  # nothing planted ran
    # no script error and no CSP violation (the 401 before the token and the favicon's 404 are network entries)
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and e["source"] != "network"]
    assert errors == [], errors
    # the one line that made it anomalous is shaded, with its contribution (occlusion: 0.9 -> 0.1)
    assert shaded == ["contribution 0.800", "", ""]

    # a window flagged by the novelty rule, not the model: the feed says why, the page marks the new line
    assert api.post("/logs", json={"lines": [{"message": m} for m in ["ordinary line of blk_6", NOVEL]]}).is_success
    flagged = api.post("/sequences/blk_6/close").json()["id"]
    wait_for(lambda: [r for r in api.get("/anomalies").json()["items"] if r["id"] == flagged], what="the record")
    browser.get(server + "/ui/#")
    row = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, f'#feed tr[data-window="{flagged}"]')))
    assert [td.text for td in row.find_elements(By.TAG_NAME, "td")][4] == "new template"
    row.find_element(By.TAG_NAME, "a").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#w-lines li")) == 2)
    assert "flagged by: new template" in browser.find_element(By.ID, "w-summary").text
    marked = browser.find_elements(By.CSS_SELECTOR, "#w-lines li.novel")
    assert [li.text for li in marked] == [NOVEL]
    assert "template never seen before" in (marked[0].get_attribute("title") or "")

    browser.get(server + "/ui/#")  # the feed again, with the chart; then a screenshot of it
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#chart rect"))
    time.sleep(0.2)
    browser.save_screenshot(str(screenshot_dir / "ui-feed.png"))


@pytest.mark.parametrize("server", [CountScorer], indirect=True)
def test_the_window_page_says_which_session_count_was_never_seen(server: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    api = httpx.Client(base_url=server, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert api.post("/logs", json={"lines": [{"message": m} for m in [*STEPS, STEPS[1]]]}).is_success
    flagged = api.post("/sequences/blk_7/close").json()["id"]  # wrote twice: a count no normal session had
    wait_for(lambda: [r for r in api.get("/anomalies").json()["items"] if r["id"] == flagged], what="the record")
    wait = WebDriverWait(browser, 20)
    browser.get(server + "/ui")
    wait.until(ec.visibility_of_element_located((By.ID, "token"))).send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#token-form button").click()
    row = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, f'#feed tr[data-window="{flagged}"]')))
    assert [td.text for td in row.find_elements(By.TAG_NAME, "td")][4] == "unusual count"
    row.find_element(By.TAG_NAME, "a").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#w-findings li")) == 2)
    opened, wrote = (preprocess(m) for m in STEPS)
    assert [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#w-findings li")] == [
        f"unusual count: \u201c{wrote}\u201d \u00d7 2",
        f"unusual count: \u201c{opened}\u201d minus \u201c{wrote}\u201d = -1",
    ]
    assert "flagged by: unusual count" in browser.find_element(By.ID, "w-summary").text
