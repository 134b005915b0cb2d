"""Headless Chromium (Debian's `chromium` and `chromium-driver`) driven by selenium, for
the browser console of `watchkeeper serve`: the system chromedriver named explicitly, so
Selenium Manager never looks for (or downloads) a driver of its own."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

# textual-serve keeps its xterm.js Terminal in a closure and paints it on a canvas, so the
# page has no text to read. This runs before the page's own scripts: the first object
# given a `terminal` holding an xterm buffer (textual-serve's session) hands it over, and
# the test reads the very screen buffer the canvas is painted from.
TERMINAL_TAP = """
Object.defineProperty(Object.prototype, 'terminal', {
  configurable: true,
  set(value) {
    if (value && value.buffer && !window.__wkTerminal) window.__wkTerminal = value;
    Object.defineProperty(this, 'terminal',
      {value: value, writable: true, configurable: true, enumerable: true});
  },
  get() { return undefined; },
});
"""

SCREEN = """
const terminal = window.__wkTerminal;
if (!terminal) return null;
const buffer = terminal.buffer.active, lines = [];
for (let row = 0; row < terminal.rows; row++) {
  const line = buffer.getLine(buffer.viewportY + row);
  lines.push(line ? line.translateToString(true) : '');
}
return lines.join('\\n');
"""


def missing() -> str | None:
    """Why no browser test can run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            return f"{path} is missing (Debian: apt-get install chromium chromium-driver)"
    return None


def start_browser(profile: Path, width: int = 1100, height: int = 720) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # tests run as root in CI containers
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        f"--window-size={width},{height}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    # The system chromedriver by path: Selenium Manager (which would go online for a
    # driver) is only asked when no path is given.
    service = Service(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(60)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": TERMINAL_TAP})
    return driver


def screen(driver: Any) -> str:
    """The terminal's visible text, row by row ('' before the console drew anything)."""
    return driver.execute_script(SCREEN) or ""


def wait_screen(driver: Any, condition: Callable[[str], bool], timeout: float = 60) -> str:
    """The screen once `condition` holds for it; fails after `timeout` showing the last."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = screen(driver)
        if condition(text):
            return text
        time.sleep(0.05)
    raise AssertionError(f"the console never showed what was awaited; last screen:\n{text}")


def press(driver: Any, keys: str) -> None:
    """Keys typed into the terminal (xterm's hidden textarea has the focus once clicked)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    terminal = driver.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea")
    driver.execute_script("arguments[0].focus()", terminal)
    ActionChains(driver).send_keys(keys).perform()


def save_screenshot(driver: Any, name: str) -> Path | None:
    """With WATCHKEEPER_SCREENSHOTS=1 only: screenshots/<name> in the repository (tests
    never write into the tree otherwise)."""
    if os.environ.get("WATCHKEEPER_SCREENSHOTS") != "1":
        return None
    target = Path(__file__).resolve().parents[1] / "screenshots" / name
    scratch = target.with_suffix(".tmp.png")
    driver.save_screenshot(str(scratch))
    shutil.move(scratch, target)
    return target
