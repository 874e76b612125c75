"""The playground page in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`) driven by Selenium against uvicorn on a free 127.0.0.1 port. What the page shows
is checked against what the API answers for the same text. Without Chromium these tests fail (they
never skip), so CI cannot pass without having run them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.serving.serving_helpers import free_port

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 60
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # tests run as root in CI containers
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1100,1000",
)
UTTERANCE = "show me flights from boston to denver on monday"


def browser_paths() -> tuple[str, str]:
    chromium = os.environ.get("SLOTFILL_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    driver = os.environ.get("SLOTFILL_CHROMEDRIVER") or shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.fail(
            "the browser tests need Chromium and its WebDriver: apt-get install chromium chromium-driver "
            "(or set SLOTFILL_CHROMIUM and SLOTFILL_CHROMEDRIVER)"
        )
    return chromium, driver


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = browser_paths()
    options = Options()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


@contextmanager
def server(checkpoint: Path, ready: bool = True, **env: str) -> Iterator[str]:
    """`python -m serving` on a free port; waits for /readyz (or, with `ready=False`, for /livez)."""
    port = free_port()
    environment = {**os.environ, "SLOTFILL_LOG_LEVEL": "warning", **env}
    command = [sys.executable, "-m", "serving", "--checkpoint", str(checkpoint), "--port", str(port)]
    process = subprocess.Popen(command, cwd=REPO, env=environment)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WAIT_S
        while True:
            assert process.poll() is None, f"server exited with {process.returncode}"
            try:
                if httpx.get(f"{base}/{'readyz' if ready else 'livez'}", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server never became ready"
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for(driver, condition, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S).until(lambda d: condition(d), message=f"timed out waiting for {what}")


def shown_sentence(driver, container: object) -> dict:
    """What a rendered sentence shows: its text, its words (text, tag, tooltip) and its highlighted
    spans (type, offsets, the words inside, colour)."""
    return driver.execute_script(
        """
        const box = arguments[0];
        return {
          text: box.textContent,
          words: Array.from(box.querySelectorAll('.word')).map((w) => ({
            text: w.textContent, tag: w.dataset.tag, title: w.title, tabIndex: w.tabIndex})),
          spans: Array.from(box.querySelectorAll('mark.ent')).map((m) => ({
            slot: m.dataset.slot, start: Number(m.dataset.start), end: Number(m.dataset.end),
            words: Array.from(m.querySelectorAll('.word')).map((w) => w.textContent),
            label: m.querySelector('.label').textContent,
            canonical: m.querySelector('.canonical') ? m.querySelector('.canonical').textContent : null,
            colour: getComputedStyle(m).backgroundColor})),
        };
        """,
        container,
    )


def check_sentence(shown: dict, expected: dict) -> None:
    """The page shows the API's answer: every word with its tag and confidence, every slot in place."""
    words = expected["words"]
    assert [(w["text"], w["tag"]) for w in shown["words"]] == [(w["text"], w["tag"]) for w in words]
    for word, answer in zip(shown["words"], words, strict=True):
        assert word["title"] == f"{answer['tag']} · {answer['confidence']:.4f}"
        assert word["tabIndex"] == 0  # reachable with the keyboard
    assert [(s["slot"], s["start"], s["end"], s["label"]) for s in shown["spans"]] == [
        (s["slot"], s["start"], s["end"], s["slot"]) for s in expected["slots"]
    ]
    for span, slot in zip(shown["spans"], expected["slots"], strict=True):
        inside = [w["text"] for w in words[slot["token_start"] : slot["token_end"]]]
        assert span["words"] == inside
    colours: dict[str, str] = {}
    for span in shown["spans"]:  # one colour per slot type
        assert colours.setdefault(span["slot"], span["colour"]) == span["colour"]
    # the sentence reads as typed: the labels are the only text added
    labels = "".join(s["label"] + (s["canonical"] or "") for s in shown["spans"])
    assert len(shown["text"]) == len(expected["text"]) + len(labels)


def submit_and_wait(driver, field_id: str, text: str, keys: str, status_id: str, error_id: str) -> None:
    from selenium.webdriver.common.by import By

    driver.execute_script("document.getElementById(arguments[0]).textContent = ''", status_id)
    field = driver.find_element(By.ID, field_id)
    field.clear()
    if text:
        field.send_keys(text)
    field.send_keys(keys)
    wait_for(
        driver,
        lambda d: d.find_element(By.ID, status_id).text.startswith("tagged") or d.find_element(By.ID, error_id).text,
        f"an answer in #{status_id} or #{error_id}",
    )


def test_playground_shows_what_the_api_answers(browser, tiny_checkpoint: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = browser
    with server(tiny_checkpoint) as base:
        api = httpx.Client(base_url=base, timeout=30)
        model = api.get("/v1/model").json()
        driver.get(base + "/")
        wait_for(driver, lambda d: model["version"] in d.find_element(By.ID, "model-name").text, "the model name")
        assert driver.find_element(By.ID, "model-name").text == f"{model['name']} {model['version']}"

        # one utterance: Enter submits
        submit_and_wait(driver, "text", UTTERANCE, Keys.ENTER, "status-one", "error-one")
        expected = api.post("/v1/tag", json={"text": UTTERANCE}).json()
        assert driver.find_element(By.ID, "error-one").text == ""
        assert expected["slots"], "the tiny model finds slots in this utterance"
        check_sentence(shown_sentence(driver, driver.find_element(By.ID, "sentence")), expected)
        bars = driver.find_elements(By.CSS_SELECTOR, "#intents li")
        assert [b.get_attribute("data-intent") for b in bars] == [i["name"] for i in expected["intent_ranking"]]
        assert bars[0].get_attribute("data-intent") == expected["intent"]["name"]
        assert bars[0].find_element(By.CLASS_NAME, "pct").text == f"{100 * expected['intent']['confidence']:.1f}%"
        rows = driver.find_elements(By.CSS_SELECTOR, "#slots tbody tr")
        assert [r.find_elements(By.TAG_NAME, "td")[1].text for r in rows] == [s["value"] for s in expected["slots"]]
        status = driver.find_element(By.ID, "status-one").text
        assert status.startswith(f"tagged {len(expected['words'])} words in ") and " ms " in status
        assert parse_qs(urlsplit(driver.current_url).query)["text"] == [UTTERANCE]  # a link to this result
        driver.save_screenshot(str(tmp_path / "playground.png"))

        # the keyboard reaches each word, and focus shows its tag and confidence
        first_word = driver.find_element(By.CSS_SELECTOR, "#sentence .word")
        driver.execute_script("arguments[0].focus()", first_word)
        tip = driver.execute_script("return getComputedStyle(arguments[0], '::after').content", first_word)
        assert expected["words"][0]["tag"] in tip

        # a shared link tags its text on load
        shared = "what is the fare from dallas to atlanta"
        driver.get(base + "/?" + httpx.QueryParams({"text": shared}).__str__())
        wait_for(driver, lambda d: d.find_element(By.ID, "status-one").text.startswith("tagged"), "the shared text")
        assert driver.find_element(By.ID, "text").get_attribute("value") == shared
        check_sentence(
            shown_sentence(driver, driver.find_element(By.ID, "sentence")),
            api.post("/v1/tag", json={"text": shared}).json(),
        )

        # the API's message for bad input (422), and no result left from before
        submit_and_wait(driver, "text", "   ", Keys.ENTER, "status-one", "error-one")
        message = api.post("/v1/tag", json={"text": "   "}).json()["error"]["message"]
        assert driver.find_element(By.ID, "error-one").text == f"Error 422: {message}"
        assert not driver.find_element(By.ID, "result-one").is_displayed()

        # text is shown as text, never run as markup
        hostile = "flights to <img src=x onerror=alert(1)> boston"
        submit_and_wait(driver, "text", hostile, Keys.ENTER, "status-one", "error-one")
        assert driver.find_elements(By.CSS_SELECTOR, "#sentence img") == []
        check_sentence(
            shown_sentence(driver, driver.find_element(By.ID, "sentence")),
            api.post("/v1/tag", json={"text": hostile}).json(),
        )

        # several utterances: Ctrl+Enter tags them through /v1/tag/batch, one row each
        lines = [UTTERANCE, "what is the fare from new york to pittsburgh", "", "flights from atlanta to dallas"]
        driver.find_element(By.ID, "tab-batch").click()
        submit_and_wait(driver, "batch", "\n".join(lines), Keys.CONTROL + Keys.ENTER, "status-batch", "error-batch")
        utterances = [line for line in lines if line]
        batch = api.post("/v1/tag/batch", json={"items": [{"text": line} for line in utterances]}).json()
        rows = driver.find_elements(By.CSS_SELECTOR, "#batch-table tbody tr")
        assert len(rows) == len(utterances)
        for row, result in zip(rows, batch["results"], strict=True):
            check_sentence(shown_sentence(driver, row.find_element(By.CLASS_NAME, "sentence")), result)
            assert row.find_element(By.CLASS_NAME, "intent").text == result["intent"]["name"]
        driver.save_screenshot(str(tmp_path / "playground-batch.png"))
        submit_and_wait(driver, "batch", "", Keys.CONTROL + Keys.ENTER, "status-batch", "error-batch")
        message = api.post("/v1/tag/batch", json={"items": []}).json()["error"]["message"]
        assert driver.find_element(By.ID, "error-batch").text == f"Error 422: {message}"

        # a phone-width screen (a desktop window cannot be made that narrow): nothing wider than it
        metrics = {"width": 360, "height": 780, "deviceScaleFactor": 1, "mobile": True}
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        for tab, field, text, keys, which in (
            ("tab-batch", "batch", "\n".join(lines), Keys.CONTROL + Keys.ENTER, "batch"),
            ("tab-one", "text", UTTERANCE, Keys.ENTER, "one"),
        ):
            driver.find_element(By.ID, tab).click()
            submit_and_wait(driver, field, text, keys, f"status-{which}", f"error-{which}")
            width = driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
            assert width == [360, 360], f"{which}: the page is {width[0]} px wide on a {width[1]} px screen"
            driver.save_screenshot(str(tmp_path / f"playground-phone-{which}.png"))
    print(f"screenshots in {tmp_path}")


def test_playground_shows_the_apis_503_and_413_messages(browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = browser
    missing = tmp_path / "not-yet.ckpt"  # the service stays up, not ready, until a checkpoint loads
    with server(missing, ready=False, SLOTFILL_MAX_BODY_BYTES="200") as base:
        api = httpx.Client(base_url=base, timeout=30)
        driver.get(base + "/")
        wait_for(driver, lambda d: d.find_element(By.ID, "model-name").text == "loading…", "the loading notice")
        submit_and_wait(driver, "text", "flights to boston", Keys.ENTER, "status-one", "error-one")
        message = api.post("/v1/tag", json={"text": "flights to boston"}).json()["error"]["message"]
        assert driver.find_element(By.ID, "error-one").text.startswith(f"Error 503: {message}")
        long = "flights from boston to denver " * 10
        submit_and_wait(driver, "text", long, Keys.ENTER, "status-one", "error-one")
        message = api.post("/v1/tag", json={"text": long}).json()["error"]["message"]
        assert driver.find_element(By.ID, "error-one").text == f"Error 413: {message}"


def test_the_page_is_self_contained_and_never_writes_markup(client) -> None:
    """One HTML file: no script, style, font or image fetched from elsewhere, a policy that holds
    the browser to that, and user data written only as text."""
    import re

    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    page = response.text
    assert re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page) == []
    assert re.findall(r"@import|url\(", page) == []
    assert "innerHTML" not in page and "insertAdjacentHTML" not in page and "document.write" not in page
    assert "/" not in client.get("/openapi.json").json()["paths"]  # the API's schema stays the API's
