"""The trigger form of ``object_detection_training`` in a real browser (Debian's chromium
through chromedriver, never downloaded), against the real local Airflow API server: log in,
open the form, check sections and defaults, change fields (the learning rate among them),
trigger, and find the run with those values in its conf. Screenshots go to
``tests/e2e/artifacts/`` (form-*.png, run-conf.png)."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import quote

import pytest
from airflow_stack import ARTIFACTS

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DAG_ID = "object_detection_training"
SECTIONS = ["Data", "Model", "Training", "Registry", "Run Parameters"]
WAIT = 60  # seconds a page element may take to appear on a busy machine


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail(
            "chromium and chromedriver are missing: apt-get install chromium chromium-driver"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument("--window-size=1400,2000")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def _wait(driver, condition, what: str):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # React re-renders: an element found a moment ago may be gone when read; look again.
    wait = WebDriverWait(
        driver, WAIT, poll_frequency=0.5, ignored_exceptions=(StaleElementReferenceException,)
    )
    return wait.until(condition, f"waiting for {what}")


def _shot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    return path


def _login(driver, stack) -> None:
    from selenium.webdriver.common.by import By

    driver.get(stack.url)
    user = _wait(driver, lambda d: d.find_elements(By.NAME, "username"), "the login form")[0]
    user.send_keys(stack.user)
    driver.find_element(By.NAME, "password").send_keys(stack.password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    _wait(driver, lambda d: "/auth/login" not in d.current_url, "the login to finish")


def _trigger_dialog(driver, stack):
    from selenium.webdriver.common.by import By

    driver.get(f"{stack.url}/dags/{DAG_ID}")
    button = _wait(
        driver,
        lambda d: d.find_elements(By.CSS_SELECTOR, "button[aria-label='Trigger Dag']"),
        "the Trigger button",
    )[0]
    button.click()

    def dialog(d):
        found = [e for e in d.find_elements(By.CSS_SELECTOR, "[role=dialog]") if e.text]
        return [e for e in found if e.text.startswith("Trigger Dag")]

    return _wait(driver, dialog, "the trigger form")[0]


def _section_titles(dialog) -> list[str]:
    from selenium.webdriver.common.by import By

    return [
        b.text
        for b in dialog.find_elements(By.CSS_SELECTOR, "button[id^='accordion:']")
        if b.text and b.text != "Advanced Options"
    ]


def _open(driver, dialog, title: str) -> None:
    from selenium.webdriver.common.by import By

    (button,) = [
        b
        for b in dialog.find_elements(By.CSS_SELECTOR, "button[id^='accordion:']")
        if b.text == title
    ]
    if button.get_attribute("aria-expanded") != "true":
        button.click()
    _wait(driver, lambda d: button.get_attribute("aria-expanded") == "true", f"section {title}")
    time.sleep(0.5)  # the accordion's opening animation, for the screenshot


def _field(driver, name: str):
    from selenium.webdriver.common.by import By

    return _wait(
        driver,
        lambda d: (
            [e for e in d.find_elements(By.NAME, f"element_{name}") if e.is_displayed()]
            or [e for e in d.find_elements(By.NAME, f"element_{name}")]
        ),
        f"field {name}",
    )[0]


def _replace(element, text: str) -> None:
    from selenium.webdriver.common.keys import Keys

    element.send_keys(Keys.CONTROL, "a")
    element.send_keys(Keys.DELETE)
    element.send_keys(text)


def _choose(driver, field_name: str, label: str) -> list[str]:
    """Pick ``label`` in the select of ``field_name``; returns the labels it offered."""
    from selenium.webdriver.common.by import By

    hidden = _field(driver, field_name)
    # A react-select: the text input before the hidden one that carries the value.
    search = hidden.find_element(By.XPATH, "./preceding::input[@type='text'][1]")
    search.click()
    options = _wait(
        driver,
        lambda d: [
            o
            for o in d.find_elements(By.CSS_SELECTOR, "[role=option], [id*='-option-']")
            if o.is_displayed()
        ],
        f"the options of {field_name}",
    )
    labels = [o.text for o in options]
    [o for o in options if o.text == label][0].click()
    _wait(driver, lambda d: hidden.get_attribute("value") != "", f"{field_name} to be chosen")
    return labels


def test_trigger_form_sections_defaults_and_conf(airflow_stack, browser):
    stack, driver = airflow_stack, browser
    from selenium.webdriver.common.by import By

    stack.wait_for_dag(DAG_ID)
    _login(driver, stack)
    dialog = _trigger_dialog(driver, stack)
    _shot(driver, "form-1-opened.png")

    titles = _section_titles(dialog)
    # Compute appears once it has Params; the others in this order, one Param outside them.
    assert [t for t in titles if t != "Compute"] == SECTIONS, titles

    _open(driver, dialog, "Data")
    assert _field(driver, "dataset_uri").get_attribute("value") == str(stack.dataset)
    assert _field(driver, "input_format").get_attribute("value") == "image+json"
    assert _field(driver, "train_rec_uri").get_attribute("value") == ""
    assert _field(driver, "attribute_names").get_attribute("value") == "source-ref\nbounding-box"
    offered = _choose(driver, "input_format", "RecordIO (.rec per channel)")
    assert offered == [
        "Images + JSON annotations (a dataset folder)",
        "RecordIO (.rec per channel)",
        "Augmented manifest (JSON Lines per channel)",
    ]
    assert _field(driver, "input_format").get_attribute("value") == "recordio"
    _replace(_field(driver, "train_rec_uri"), "/data/train.rec")
    _replace(_field(driver, "validation_rec_uri"), "/data/validation.rec")
    _shot(driver, "form-2-data.png")

    _open(driver, dialog, "Model")
    assert _field(driver, "base_network").get_attribute("value") == "mobilenet-0.25"
    assert _field(driver, "image_shape").get_attribute("value") == "300"
    _shot(driver, "form-3-model.png")

    _open(driver, dialog, "Training")
    assert _field(driver, "epochs").get_attribute("value") == "10"
    assert _field(driver, "learning_rate").get_attribute("value") == "0.001"
    _replace(_field(driver, "epochs"), "3")
    _replace(_field(driver, "learning_rate"), "0.00025")
    _shot(driver, "form-4-training.png")

    _open(driver, dialog, "Registry")
    assert _field(driver, "model_name").get_attribute("value") == "object-detection"
    _replace(_field(driver, "model_name"), "browser-model")
    _shot(driver, "form-5-registry.png")

    _open(driver, dialog, "Run Parameters")
    assert _field(driver, "artifact_root").get_attribute("value") == str(stack.home / "artifacts")

    # The run stays queued (the DAG stays paused): this test looks at the conf, not training.
    unpause = dialog.find_element(By.CSS_SELECTOR, "input[type=checkbox]")
    if unpause.is_selected():
        unpause.find_element(By.XPATH, "./ancestor::label[1]").click()
    assert not unpause.is_selected()
    trigger = [b for b in dialog.find_elements(By.CSS_SELECTOR, "button") if b.text == "Trigger"][0]
    assert trigger.is_enabled()
    trigger.click()
    _wait(
        driver,
        lambda d: (
            not [
                e
                for e in d.find_elements(By.CSS_SELECTOR, "[role=dialog]")
                if e.text.startswith("Trigger Dag")
            ]
        ),
        "the form to close",
    )

    runs = stack.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns?order_by=-run_after&limit=1")
    (run,) = runs["dag_runs"]
    conf = run["conf"]
    assert conf["learning_rate"] == 0.00025 and isinstance(conf["learning_rate"], float), conf
    assert conf["epochs"] == 3 and isinstance(conf["epochs"], int), conf
    assert conf["model_name"] == "browser-model"
    assert conf["input_format"] == "recordio"
    assert conf["train_rec_uri"] == "/data/train.rec"
    assert conf["validation_rec_uri"] == "/data/validation.rec"
    assert conf["dataset_uri"] == str(stack.dataset)
    assert conf["train_manifest_uri"] is None
    assert conf["attribute_names"] == ["source-ref", "bounding-box"]
    assert conf["base_network"] == "mobilenet-0.25" and conf["image_shape"] == 300

    # The run in the UI, with its conf (a scrolling code view: its top, then its end).
    driver.get(f"{stack.url}/dags/{DAG_ID}/runs/{quote(run['dag_run_id'], safe='')}/details")
    try:
        _wait(driver, lambda d: '"recordio"' in d.page_source, "the run's conf on its page")
    finally:
        _shot(driver, "run-conf.png")
    assert '"/data/train.rec"' in driver.page_source
    driver.execute_script(_SCROLL_CONF_TO_END)
    _wait(driver, lambda d: '"browser-model"' in d.page_source, "the end of the conf")
    _shot(driver, "run-conf-end.png")
    assert "0.00025" in driver.page_source


# Scroll every scrolling box that shows the conf to its end (the code view renders the
# lines in sight only).
_SCROLL_CONF_TO_END = """
for (const el of document.querySelectorAll('*')) {
  if (el.scrollHeight > el.clientHeight + 4 && el.textContent.includes('"input_format"')) {
    el.scrollTop = el.scrollHeight;
  }
}
"""
