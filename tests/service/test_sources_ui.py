"""The sources table of /ui in a real headless Chromium: a source the model does not know is flagged with the
words of ``GET /sources`` and the command that trains its own model; a known one is not. Server, browser and the
Chromium requirement: test_delivery_ui.py."""

# ruff: noqa: F811  (the fixtures server and browser come from test_delivery_ui.py and are used as arguments)
from __future__ import annotations

from typing import Any

import httpx

from service.patterns.keeper import UNKNOWN_SOURCE
from tests.service.delivery_helpers import wait_for
from tests.service.test_delivery_ui import TOKEN, browser, server  # noqa: F401

# a template of the server's vocabulary, and 256 lines of templates it never saw: two windows of 128 lines (the
# session cap), past coverage_min_lines (200), so the second source is judged
KNOWN = ["ordinary line of blk_6"] * 4
ALIEN = [f"{word} happened on blk_8" for word in ("alpha", "beta", "gamma", "delta")] * 64


def test_a_source_the_model_does_not_know_is_flagged_on_the_page(server: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    api = httpx.Client(base_url=server, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    for source, lines in (("known", KNOWN), ("alien", ALIEN)):
        assert api.post("/logs", json={"lines": [{"message": m, "source": source} for m in lines]}).is_success
    assert api.post("/sequences/session:known:blk_6/close").is_success

    def scored() -> bool:
        found = {s["source"]: s for s in api.get("/sources").json()["items"]}
        return found.get("known", {}).get("windows") == 1 and found.get("alien", {}).get("windows") == 2

    wait_for(scored, what="both sources scored")
    wait = WebDriverWait(browser, 20)
    browser.get(server + "/ui")
    wait.until(ec.visibility_of_element_located((By.ID, "token"))).send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#token-form button").click()
    alien = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, '#sources tr[data-source="alien"]')))
    known = browser.find_element(By.CSS_SELECTOR, '#sources tr[data-source="known"]')
    cells = [td.text for td in alien.find_elements(By.TAG_NAME, "td")]
    reading = ["raw (default)", "sessions by blk_-?\\d+ (default)"]
    assert cells[:-1] == ["alien", *reading, "256 in 2 windows", "0%"]
    command = f"logllm train --from-service {server} --source alien --unlabeled --register --output runs/alien"
    assert cells[-1].splitlines() == [
        UNKNOWN_SOURCE, "train a model for this source:", command + ' --token "$LOGLLM_TOKEN"',
        "no normal window of it kept yet: start the service with --keep-normal-sample N",
        "--register needs the service started with --models",
    ]  # fmt: skip
    assert "unknown" in (alien.get_attribute("class") or "")
    assert [td.text for td in known.find_elements(By.TAG_NAME, "td")][3:] == ["4 in 1 windows", "100%", ""]
    assert "unknown" not in (known.get_attribute("class") or "")
