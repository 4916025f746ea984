"""The control page in a real browser: Debian's chromium, headless, driven by selenium through
chromium-driver (no browser download). Choose a preset in the gallery, drag a slider, press
reseed and pause, type a tempo, tap, drag the beat amount → `ctl status` shows each; the picture
changes; the readout updates; the beat dots flash; a change made with `ctl` moves the slider.

Needs `chromium` and `chromium-driver` (apt) and `selenium` (pip); without them the test skips
and says which is missing, unless CA_SERVER_REQUIRE_BROWSER=1 (as .ci/run sets), which makes a
missing browser a failure. `CA_SERVER_SCREENSHOT=path.png` also saves the page (docs/).
"""

from __future__ import annotations

import io
import os
import shutil
import time

import pytest
from daemon_process import DaemonProcess
from view_process import ViewProcess

pytestmark = [pytest.mark.subprocess, pytest.mark.browser]

BOUND_S = 90.0  # hang bound: chromium and the daemon share a loaded 2-core box


def browser_or_skip():
    """A headless chromium WebDriver, or skip (fail under CA_SERVER_REQUIRE_BROWSER=1)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    missing = [
        what for what, found in [("chromium", chromium), ("chromedriver", driver_path)] if not found
    ]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium (pip install selenium)")
    if missing:
        reason = "no " + ", ".join(missing) + ": apt-get install chromium chromium-driver"
        if os.environ.get("CA_SERVER_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,860")
    return webdriver.Chrome(options=options, service=Service(driver_path))


def wait_for(check, what: str, bound_s: float = BOUND_S):
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {bound_s} s")


def picture(browser) -> tuple[float, ...]:
    """Mean RGB of the live picture as the browser shows it (an element screenshot)."""
    from PIL import Image, ImageStat

    png = browser.find_element("id", "stream").screenshot_as_png
    return tuple(ImageStat.Stat(Image.open(io.BytesIO(png)).convert("RGB")).mean)


def test_a_vj_plays_the_daemon_from_the_page(daemon: DaemonProcess) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    browser = browser_or_skip()
    viewer = ViewProcess(daemon)
    try:
        viewer.wait_serving()
        browser.get(f"{viewer.url}/")
        text = lambda element_id: browser.find_element("id", element_id).text  # noqa: E731
        wait_for(lambda: text("link").startswith("ring"), "the page connects to the daemon")

        published = text("published")
        wait_for(lambda: text("published") != published, "the readout updates")

        before = picture(browser)
        browser.find_element("css selector", '[data-name="labyrinth"]').click()
        wait_for(lambda: daemon.status()["preset"] == "labyrinth", "ctl shows the chosen preset")
        wait_for(
            lambda: (
                "current"
                in browser.find_element("css selector", '[data-name="labyrinth"]').get_attribute(
                    "class"
                )
            ),
            "the gallery marks the preset on screen",
        )
        wait_for(
            lambda: max(abs(a - b) for a, b in zip(picture(browser), before, strict=True)) > 4,
            "the picture changes to the new preset",
        )

        slider = browser.find_element("id", "brightness")  # 0..3, at 1: a third of the way
        width = slider.size["width"]
        ActionChains(browser).click_and_hold(slider).move_by_offset(
            width // 3, 0
        ).release().perform()
        dragged = wait_for(
            lambda: (b := daemon.status()["brightness"]) > 1.4 and b,
            "ctl shows the dragged brightness",
        )
        assert float(slider.get_attribute("value")) == pytest.approx(dragged)

        seed = daemon.status()["seed"]
        browser.find_element("id", "reseed").click()
        wait_for(lambda: daemon.status()["seed"] != seed, "ctl shows the reseed")

        browser.find_element("id", "pause").click()
        wait_for(lambda: daemon.status()["paused"], "ctl shows the pause")
        wait_for(lambda: text("pause") == "Resume", "the button offers resume")
        browser.find_element("id", "pause").click()
        wait_for(lambda: not daemon.status()["paused"], "ctl shows the resume")

        daemon.ctl("hue", "0.5")  # a change made elsewhere reaches the page
        hue = browser.find_element("id", "hue")
        wait_for(lambda: float(hue.get_attribute("value")) == 0.5, "the hue slider follows ctl")

        tempo = browser.find_element("id", "tempo")
        tempo.clear()
        tempo.send_keys("128" + Keys.ENTER)
        wait_for(lambda: daemon.status()["beat"]["bpm"] == 128, "ctl shows the typed tempo")
        wait_for(
            lambda: browser.find_elements("css selector", "#beat-dots span.on"),
            "the beat dots flash with the clock",
        )
        browser.find_element("id", "tap").click()
        wait_for(lambda: daemon.status()["beat"]["source"] == "tap", "ctl shows the tap")
        amount = browser.find_element("id", "beat")  # 0..2, at 1: halfway
        drag = -amount.size["width"] // 4
        ActionChains(browser).click_and_hold(amount).move_by_offset(drag, 0).release().perform()
        wait_for(lambda: daemon.status()["beat"]["amount"] < 0.8, "ctl shows the beat amount")

        screenshot = os.environ.get("CA_SERVER_SCREENSHOT")
        if screenshot:
            wait_for(
                lambda: browser.execute_script(
                    "return [...document.querySelectorAll('.thumb')].every((t) => t.dataset.loaded)"
                ),
                "every thumbnail drawn",
                bound_s=300,
            )
            time.sleep(2)  # a few more points in the plot
            browser.save_screenshot(screenshot)
    finally:
        browser.quit()
        viewer.stop()
