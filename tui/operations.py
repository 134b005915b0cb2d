"""What the operator's keys (and the command palette) do to the keeper: run, pause and
resume, cancel, retry, and editing the config or a vault file. Calls into the keeper run
in thread workers; each answer comes back as a notice."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.app import SuspendNotSupported

from watchkeeper.core.environment import MASK
from watchkeeper.core.resume import ResumePlan
from watchkeeper.tui.host import ConsoleHost
from watchkeeper.tui.readers import Readers
from watchkeeper.tui.screens.confirm import ConfirmScreen
from watchkeeper.tui.screens.params import ParamsScreen
from watchkeeper.tui.screens.resume import ResumeScreen
from watchkeeper.tui.screens.vault_file import VaultFileScreen

FAILED = ("failure", "timeout", "interrupted")


def editor_command(path: Path) -> list[str] | None:
    """$VISUAL, else $EDITOR (either may carry arguments, `code -w`), and the file."""
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR")
    if not editor or not editor.strip():
        return None
    return [*shlex.split(editor), str(path)]


class Operations:
    def __init__(self, app: ConsoleHost, read: Readers) -> None:
        self.app = app
        self.read = read

    def run_job(self, job: str | None) -> None:
        if job is None:
            self.app.notify("no job selected", severity="warning")
            return
        self._call(f"run {job}", self.app.client.run_now, job)

    def run_with_params(self, job: str | None, given: dict[str, str] | None = None) -> None:
        """R: the job's params in a form (`given` over the defaults), then the run. A job
        that declares none runs at once, as `r` runs it: there is nothing to ask."""
        if job is None:
            self.app.notify("no job selected", severity="warning")
            return
        config = self.app.config.jobs.get(job)
        defaults = config.params if config is not None else {}
        if not defaults:
            self.app.notify(f"{job} takes no parameters: run as r runs it", timeout=3)
            self.run_job(job)
            return
        # A value the history masked is not the one the run had: its default instead.
        kept = {k: v for k, v in (given or {}).items() if k in defaults and v != MASK}

        def answer(values: dict[str, str] | None) -> None:
            if values is not None:
                self._call(f"run {job}", self.app.client.run_now, job, values)

        self.app.push_screen(ParamsScreen(job, defaults, {**defaults, **kept}), answer)

    def toggle_pause(self, job: str | None) -> None:
        if job is None:
            self.app.notify("no job selected", severity="warning")
            return
        model = self.app.model
        if model.is_own_paused(job):
            self._preview_resume(job)
            return
        model.own_paused.add(job)
        self._call(f"pause {job}", self.app.client.pause, job)
        self._show_paused(job)

    def toggle_pause_all(self) -> None:
        if self.app.model.global_paused:
            self._preview_resume(None)
        else:
            self._call("pause everything", self.app.client.pause, None)

    def cancel_run(self, target: tuple[str, str] | None) -> None:
        if target is None:
            self.app.notify("no run of the selected job is in flight", severity="warning")
            return
        run_id, job = target

        def answer(yes: bool | None) -> None:
            if yes:
                self._call(f"cancel run {run_id}", self.app.client.cancel, run_id)

        self.app.push_screen(ConfirmScreen(f"Cancel run {run_id} of {job}?"), answer)

    def retry(self, record: dict[str, Any] | None) -> None:
        """Run the job of a failed run again, now: a manual run, as `r` starts."""
        if not record:
            self.app.notify("no run selected", severity="warning")
            return
        job, status = record.get("taskId"), record.get("status")
        if status not in FAILED:
            self.app.notify(
                f"run {record.get('id')} of {job} did not fail ({status}); r runs it again",
                severity="warning",
            )
            return
        config = self.app.config.jobs.get(str(job))
        if config is not None and config.params:
            self.run_with_params(config.name, record.get("params"))  # that run's values
            return
        self._call(f"retry {job}", self.app.client.run_now, job)

    def edit(self, relative: str | None) -> None:
        """Open a vault file (`relative`, else the config) in the operator's editor, the
        console set aside meanwhile; read it again after."""
        path = self.app.vault / relative if relative else self.app.config.path
        command = editor_command(path)
        if command is None:
            self.app.notify("set $EDITOR (or $VISUAL) to edit from the console", severity="warning")
            return
        try:
            try:
                with self.app.suspend():
                    subprocess.run(command, check=False)
            except SuspendNotSupported:
                # No terminal to hand over (a headless console): the editor runs without.
                subprocess.run(command, check=False, stdin=subprocess.DEVNULL)
        except OSError as error:
            self.app.notify(f"cannot start {command[0]}: {error.strerror}", severity="error")
            return
        self.edited(path)

    def edited(self, path: Path) -> None:
        """A file came back from the editor: show what it holds now."""
        if path == self.app.config.path:
            self.read.config()
        else:
            self.read.vault()
        if isinstance(self.app.screen, VaultFileScreen):
            self.app.screen.reread()

    # ---- resuming ---------------------------------------------------------------------

    def _preview_resume(self, job: str | None) -> None:
        self.app.run_worker(
            lambda: self._plan_resume(job), thread=True, group="command", exit_on_error=False
        )

    def _plan_resume(self, job: str | None) -> None:
        """Resume at once when nothing piled up; else show what would fire and ask."""
        app = self.app
        what = f"resume {job or 'everything'}"
        if not app.keeper_started or app.closing:
            app.call_from_thread(app.notify, f"cannot {what}: the keeper is not running")
            return
        try:
            plan = app.client.resume_plan(job)
        except Exception as error:
            app.call_from_thread(app.notify, f"{what} failed: {error}", severity="error")
            return
        if plan.runs:
            app.call_from_thread(self._ask_resume, job, plan)
        else:
            app.call_from_thread(self._resume, job, True)

    def _ask_resume(self, job: str | None, plan: ResumePlan) -> None:
        def answer(choice: str | None) -> None:
            if choice is not None:
                self._resume(job, choice == "with")

        self.app.push_screen(ResumeScreen(plan), answer)

    def _resume(self, job: str | None, missed: bool) -> None:
        what = f"resume {job or 'everything'}" + ("" if missed else " without missed runs")
        if job is not None:
            self.app.model.own_paused.discard(job)
        self._call(what, self.app.client.resume, job, missed)
        self._show_paused(job)

    def _show_paused(self, job: str | None) -> None:
        model = self.app.model
        if job is not None:
            model.dirty_jobs.add(job)
            model.dirty.add("jobs")
        # A key's own effect shows at once; only the keeper's stream waits for the tick.
        self.app.redraw()

    # ---- calls ------------------------------------------------------------------------

    def _call(self, what: str, function: Callable[..., Any], *args: Any) -> None:
        self.app.run_worker(
            lambda: self._answer(what, function, *args),
            thread=True,
            group="command",
            exit_on_error=False,
        )

    def _answer(self, what: str, function: Callable[..., Any], *args: Any) -> None:
        """A quick call into the keeper, off the UI thread; its answer as a notice."""
        app = self.app
        if not app.keeper_started or app.closing:
            app.call_from_thread(app.notify, f"cannot {what}: the keeper is not running")
            return
        try:
            result = function(*args)
        except Exception as error:
            app.call_from_thread(app.notify, f"{what} failed: {error}", severity="error")
            return
        notice = what
        if isinstance(result, str):
            notice = f"{what}: run {result}"
        elif result is False:
            notice = f"{what}: nothing to cancel any more"
        app.call_from_thread(app.notify, notice, timeout=3)
        app.refresh_snapshot()
