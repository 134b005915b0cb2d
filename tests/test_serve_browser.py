"""The console of `watchkeeper serve` in headless Chromium: one real keeper, one real
server and one browser for the module, each test logging in with its own token (or none).
What the tests read is the page's own terminal buffer, the one its canvas is painted from
(browser_kit.TERMINAL_TAP), and what the keeper did is read back through the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from browser_kit import missing, press, save_screenshot, start_browser, wait_screen
from conftest import Daemons, run_cli, wait_for
from serve_kit import Servers, add_token

pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))

JOBS = """\
[jobs.report]
command = ["echo", "report written"]

[jobs.tidy]
command = ["true"]
"""


@dataclass
class Site:
    vault: Path
    url: str
    operate: str
    read: str
    driver: Any

    def open(self, token: str | None) -> None:
        """A fresh tab state: no cookie, then the login (which lands on `/`) if a token."""
        self.driver.delete_all_cookies()
        self.driver.get("about:blank")
        target = "/" if token is None else f"/login?token={token}"
        self.driver.get(self.url + target)

    def runs(self, job: str) -> list[dict[str, Any]]:
        result = run_cli("history", "--job", job, "--json", "--vault", str(self.vault))
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    scratch = tmp_path_factory.mktemp("browser")
    vault = scratch / "vault"
    from watchkeeper.core.vault import ensure_layout

    ensure_layout(vault)
    (vault / "watchkeeper.toml").write_text(JOBS)
    daemons, servers = Daemons(scratch), Servers(scratch)
    driver = None
    try:
        daemons.start(vault)
        operate, read = add_token(vault, "ops", "operate"), add_token(vault, "viewer", "read")
        served = servers.start(vault)
        driver = start_browser(scratch / "profile")
        yield Site(vault, served.url, operate, read, driver)
    finally:
        if driver is not None:
            driver.quit()
        servers.stop_all()
        daemons.stop_all()


def footer(text: str) -> str:
    return [line for line in text.splitlines() if line.strip()][-1]


def attached(site: Site) -> str:
    """The console once attached and focused: a tab without the focus (headless, nobody
    clicked) gets a Textual app that is blurred, whose footer shows no keys."""
    wait_screen(site.driver, lambda text: "ATTACHED" in text and "report" in text)
    press(site.driver, "")
    return wait_screen(site.driver, lambda text: "Help" in footer(text))


def test_a_page_without_a_token_is_refused(site: Site) -> None:
    site.open(None)
    status = site.driver.execute_script(
        "return performance.getEntriesByType('navigation')[0].responseStatus"
    )
    body = site.driver.execute_script("return document.body.innerText")
    assert status == 401 and "a token is needed" in body
    assert site.driver.execute_script("return document.querySelector('.xterm')") is None
    site.driver.get(f"{site.url}/login?token=wk_not-a-token")
    assert "unknown or revoked token" in site.driver.execute_script(
        "return document.body.innerText"
    )


def test_operate_console_renders_and_r_runs_the_selected_job(site: Site) -> None:
    site.open(site.operate)
    text = attached(site)
    assert site.vault.name in text.splitlines()[0]  # the header names the vault
    assert "tidy" in text
    for key in ("Run", "Pause", "Cancel"):
        assert key in footer(text), footer(text)
    assert site.runs("report") == []
    press(site.driver, "r")  # the Jobs pane has the focus, its first row (report) selected
    ran = wait_for(lambda: [run for run in site.runs("report") if run["status"] == "success"])
    assert isinstance(ran, list) and len(ran) == 1
    assert site.runs("tidy") == []
    text = wait_screen(site.driver, lambda text: "success" in text.lower())
    save_screenshot(site.driver, "browser-console.png")
    fetched = site.driver.execute_script(
        "return performance.getEntriesByType('resource').map(entry => entry.name)"
    )
    assert fetched and all(url.startswith(site.url + "/") for url in fetched), fetched


def test_read_console_has_no_run_pause_cancel_and_r_runs_nothing(site: Site) -> None:
    site.open(site.read)
    text = attached(site)
    for key in ("Run", "Pause", "Cancel"):
        assert key not in footer(text), footer(text)
    before = len(site.runs("report"))
    # r, then a key whose effect shows: once the help is up, the r before it was handled.
    press(site.driver, "r?")
    wait_screen(site.driver, lambda text: "Keys" in text or "keys" in text)
    assert len(site.runs("report")) == before
    assert len(site.runs("tidy")) == 0
