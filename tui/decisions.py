"""What `a` and `d` do to an item in Needs_Action/ (the Vault pane's row, or the item's
preview): approve it, or ask why and dismiss it (core/triage.py, through the keeper the
console owns or is attached to). The keeper's answer comes back as a notice."""

from __future__ import annotations

from collections.abc import Callable

from watchkeeper.core.triage import WAITING, find_shown, one_line
from watchkeeper.tui.host import ConsoleHost
from watchkeeper.tui.screens.dismiss import DismissScreen


def approve(app: ConsoleHost, relative: str | None, done: Callable[[], None] | None = None) -> None:
    if _waiting(app, relative, "approve"):
        assert relative is not None
        _decide(app, relative, "approved", None, done)


def dismiss(app: ConsoleHost, relative: str | None, done: Callable[[], None] | None = None) -> None:
    if not _waiting(app, relative, "dismiss"):
        return
    assert relative is not None

    def answer(reason: str | None) -> None:
        if reason:
            _decide(app, relative, "dismissed", reason, done)

    app.push_screen(DismissScreen(relative), answer)


def _waiting(app: ConsoleHost, relative: str | None, what: str) -> bool:
    if relative is None or not relative.startswith(f"{WAITING}/"):
        app.notify(f"{what}: select an item in {WAITING}/", severity="warning")
        return False
    return True


def _decide(
    app: ConsoleHost,
    relative: str,
    outcome: str,
    reason: str | None,
    done: Callable[[], None] | None,
) -> None:
    what = "approve" if outcome == "approved" else "dismiss"

    def work() -> None:
        if not app.keeper_started or app.closing:
            app.call_from_thread(app.notify, f"cannot {what}: the keeper is not running")
            return
        try:
            # A row shows a name that is not UTF-8 with U+FFFD: find the file it stands for.
            decision = app.client.decide(find_shown(app.vault, relative), outcome, reason)
        except Exception as error:
            app.call_from_thread(app.notify, f"{what} failed: {error}", severity="error")
            return
        notice = f"{outcome} {one_line(relative)} -> {one_line(str(decision.get('to')))}"
        app.call_from_thread(app.notify, notice, timeout=4)
        if done is not None:
            app.call_from_thread(done)

    app.run_worker(work, thread=True, group="command", exit_on_error=False)
