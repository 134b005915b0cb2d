"""The console `watchkeeper attach` opens (and `watchkeeper serve` in each browser tab):
attached to the running keeper, never its owner, and with `read_only` unable to run,
pause, cancel, retry or edit.

Read-only is kept twice: the keys are gone from this console (footer, palette), and its
client marks every request with the read role, so the keeper refuses them anyway.
"""

from __future__ import annotations

from typing import Any

from watchkeeper.core.client import SocketClient
from watchkeeper.core.config import Config
from watchkeeper.tui.app import ConsoleApp
from watchkeeper.tui.main_screen import MainScreen

OPERATE_ACTIONS = frozenset({"run_job", "pause_job", "pause_all", "cancel_run", "retry", "edit"})


class ReadOnlyMainScreen(MainScreen):
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in OPERATE_ACTIONS:
            return False
        return super().check_action(action, parameters)


class AttachedConsole(ConsoleApp):
    def __init__(self, config: Config, read_only: bool = False, **options: Any) -> None:
        # ControlUnavailable when no keeper answers: there is nothing to attach to.
        client = SocketClient(config.vault, role="read" if read_only else None)
        super().__init__(config, client, **options)
        self.read_only = read_only
        if read_only:
            self.sub_title = "read-only"

    def get_default_screen(self) -> MainScreen:
        if not self.read_only:
            return super().get_default_screen()
        self.main = ReadOnlyMainScreen(self.clock, self.model, self.ops)
        return self.main

    def _keeper_gone(self, pid: Any) -> None:
        # Never take over: this console only ever attaches (a browser tab owning the
        # vault would die with the tab).
        if self.closing:
            return
        self.session.started = False
        self.model.apply("keeper_state", {"state": "STOPPED"}, self.clock.now())
        self.model.attached_pid = None
        self.redraw()
        self.notify(
            f"keeper pid {pid} went away; this console only attaches: reopen it once a keeper runs",
            severity="warning",
            timeout=30,
        )
