"""A scientist backfills features from the Airflow 3 UI in a real headless Chromium.

Uses the session's live services (`live`, tests/integration/conftest.py): log in on the
login page, open `flights_delay_backfill`, fill the trigger form's date pickers and reason,
submit, and watch the run reach success on its page. Screenshots of each step are saved in
the test's tmp folder (`screenshots/`). The browser is Debian's chromium with its driver,
installed by the fixture when missing (tests/integration/browser.py).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.browser import ensure_browser
from tests.integration.live import Live

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("live")]  # one live stack

DAG_ID = "flights_delay_backfill"
UI_TIMEOUT = 60


@pytest.fixture(scope="session")
def driver() -> Iterator[Any]:
    browser, why = ensure_browser()
    if browser is None:
        pytest.skip(f"no headless browser: {why}")
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser.chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--lang=en-US",
                "--window-size=1400,1000"):
        options.add_argument(arg)
    chrome = webdriver.Chrome(service=Service(browser.driver), options=options)
    try:
        yield chrome
    finally:
        chrome.quit()


class Screens:
    """Numbered screenshots of one test."""

    def __init__(self, driver: Any, folder: Path) -> None:
        self.driver, self.folder, self.count = driver, folder, 0
        folder.mkdir(parents=True, exist_ok=True)

    def save(self, name: str) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{name}.png"
        assert self.driver.save_screenshot(str(path)), path
        return path


def wait_for(driver: Any, find: Any, what: str, timeout: float = UI_TIMEOUT) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.5).until(lambda d: find(d))
    except TimeoutException as exc:
        raise AssertionError(f"UI: {what} not seen after {timeout}s at {driver.current_url}") from exc


def log_in(driver: Any, live: Live, user: str, screens: Screens) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{live.api}/")
    wait_for(driver, lambda d: d.find_elements(By.NAME, "username"), "the login form")
    screens.save("login")
    driver.find_element(By.NAME, "username").send_keys(user)
    driver.find_element(By.NAME, "password").send_keys(live.passwords[user])
    driver.find_element(By.CSS_SELECTOR, "[type=submit]").click()  # FAB's is an <input>
    wait_for(driver, lambda d: "/auth/login" not in d.current_url, "the page after login")


def trigger_backfill_form(driver: Any, live: Live, form: dict[str, str],
                          screens: Screens) -> None:
    """Open the DAG's trigger dialog, type the dates and reason, turn Force on when the form
    says so, and press Trigger."""
    from selenium.webdriver.common.by import By

    driver.get(f"{live.api}/dags/{DAG_ID}")
    wait_for(driver, lambda d: d.find_elements(
        By.CSS_SELECTOR, "[data-testid=trigger-dag-button]"), "the Trigger button")[0].click()
    start = wait_for(driver, lambda d: d.find_elements(By.ID, "element_start"),
                     "the start date picker")[0]
    for field in ("start", "end"):  # en-US date inputs take MMDDYYYY keystrokes
        year, month, day = form[field].split("-")
        driver.find_element(By.ID, f"element_{field}").send_keys(f"{month}{day}{year}")
    driver.find_element(By.ID, "element_reason").send_keys(form["reason"])
    if form.get("force"):  # the Force switch: its checkbox is hidden inside the switch's label
        toggle = driver.find_element(By.NAME, "element_force")
        driver.execute_script("(arguments[0].closest('label') || arguments[0]).click()", toggle)
        wait_for(driver, lambda d: d.find_element(By.NAME, "element_force").is_selected(),
                 "the Force switch on")
    assert start.get_attribute("value") == form["start"]
    assert driver.find_element(By.ID, "element_end").get_attribute("value") == form["end"]
    driver.execute_script("arguments[0].scrollIntoView()",
                          driver.find_element(By.ID, "element_reason"))
    screens.save("trigger-form")
    buttons = [b for b in driver.find_elements(By.CSS_SELECTOR, "[role=dialog] button")
               if b.text.strip() == "Trigger"]
    assert len(buttons) == 1 and buttons[0].is_enabled(), "the form's Trigger button"
    buttons[0].click()
    wait_for(driver, lambda d: not d.find_elements(By.ID, "element_start"),
             "the dialog closing after submit")


def run_with_reason(live: Live, reason: str) -> dict[str, Any]:
    deadline = time.monotonic() + UI_TIMEOUT
    while time.monotonic() < deadline:
        found = [r for r in live.runs(DAG_ID) if (r.get("conf") or {}).get("reason") == reason]
        if found:
            return found[0]
        time.sleep(1)
    raise AssertionError(f"no {DAG_ID} run with reason {reason!r}: the submit did not reach "
                         "the API")


def watch_run_succeed(driver: Any, live: Live, run_id: str, screens: Screens) -> None:
    """Reload the run's page until its header's state badge is final; it must be success."""
    from selenium.webdriver.common.by import By

    badge = f"//h2[contains(., '{run_id}')]/following::*[@data-testid='state-badge'][1]"
    deadline = time.monotonic() + 300
    seen: list[str] = []
    while time.monotonic() < deadline:
        driver.get(f"{live.api}/dags/{DAG_ID}/runs/{run_id}")
        state = wait_for(driver, lambda d: d.find_elements(By.XPATH, badge),
                         "the run's state badge")[0].text.strip().lower()
        if not seen or seen[-1] != state:
            seen.append(state)
            screens.save(f"run-{state}")
        if state in ("success", "failed"):
            break
        time.sleep(3)
    assert seen and seen[-1] == "success", f"run page of {run_id} showed states {seen}"


def test_scientist_backfills_from_the_trigger_form(ingested: Live, driver: Any,
                                                   tmp_path: Path) -> None:
    live = ingested
    screens = Screens(driver, tmp_path / "screenshots")
    reason = f"browser test {uuid.uuid4().hex[:8]}"
    # days the features DAG already computed from these inputs: without Force they are skipped
    form = {"start": "2013-01-02", "end": "2013-01-05", "reason": reason, "force": "on"}
    log_in(driver, live, "scientist", screens)
    trigger_backfill_form(driver, live, form, screens)
    run = run_with_reason(live, reason)
    assert run["conf"]["start"] == form["start"] and run["conf"]["end"] == form["end"]
    assert run["conf"]["force"] is True
    assert run["triggering_user_name"] == "scientist"
    watch_run_succeed(driver, live, run["dag_run_id"], screens)
    assert live.wait_run(DAG_ID, run["dag_run_id"]) == "success"  # the API agrees
    for day in ("2013-01-02", "2013-01-03", "2013-01-04"):
        manifest = json.loads((live.lake() / "features" / "plane" / f"date={day}"
                               / "_manifest.json").read_text())
        assert manifest["produced_by"]["run_id"] == run["dag_run_id"]
        assert manifest["produced_by"]["reason"] == reason
        assert manifest["produced_by"]["triggered_by"] == "scientist"
    print(f"screenshots: {screens.folder}")
