"""The operator console: a Textual app over one KeeperClient.

How data moves:

* Keeper events arrive on the keeper's thread; KeeperBridge posts them as typed messages
  (thread-safe), at most `limit` unhandled, then a Resync instead of a flood; log lines
  travel in batches, and only those of the log on screen.
* Each message is folded into the Model, which only marks what changed. A timer redraws
  the dirty panes at most ten times a second inside one batch_update, so however busy
  the keeper is, the screen changes at a bounded rate (and little goes over SSH).
* Everything that reads files or calls the keeper runs in a thread worker: the start,
  snapshots, history pages, log tails, vault scans, run/pause/cancel, and the close.

The main screen works out what a key targets and hands the act to Operations; Readers
does the reading; the KeeperSession owns the keeper's start, take-over and close.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from textual import events, on, work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Input

from watchkeeper.core import history as hist
from watchkeeper.core.client import InProcessClient, KeeperClient
from watchkeeper.core.config import Config
from watchkeeper.core.locations import user_themes_dir
from watchkeeper.core.state import load_state, update_state
from watchkeeper.tui.commands import screen_commands
from watchkeeper.tui.main_screen import MainScreen
from watchkeeper.tui.messages import MESSAGES, KeeperBridge, KeeperMessage, LogLines
from watchkeeper.tui.model import Model
from watchkeeper.tui.operations import Operations
from watchkeeper.tui.readers import Readers
from watchkeeper.tui.screens.confirm import ConfirmScreen
from watchkeeper.tui.screens.help import HelpScreen
from watchkeeper.tui.screens.job_details import JobScreen, job_view
from watchkeeper.tui.screens.quit import QuitScreen, runs_are
from watchkeeper.tui.screens.run_output import RunOutputScreen
from watchkeeper.tui.screens.vault_file import VaultFileScreen
from watchkeeper.tui.session import KeeperSession, connect, one_malloc_arena
from watchkeeper.tui.text import Clock
from watchkeeper.tui.themes import DEFAULT_THEME, discover, shipped_dir
from watchkeeper.tui.widgets.cells import palette_from
from watchkeeper.tui.widgets.history_pane import HistoryPane
from watchkeeper.tui.widgets.jobs_pane import JobsPane
from watchkeeper.tui.widgets.log_pane import LogPane
from watchkeeper.tui.widgets.pane import FilterChanged
from watchkeeper.tui.widgets.vault_pane import VaultPane

REDRAW_INTERVAL = 0.1
"""Dirty panes are redrawn at most this often: ten frames a second at the very most."""
SNAPSHOT_INTERVAL = 2.0
"""Next-run times move without an event (a slot fired); a snapshot picks them up."""
KIND_OF = {message: kind for kind, message in MESSAGES.items()}


class ConsoleApp(App[int]):
    """watchkeeper's console. Build it with make_app()."""

    CSS_PATH = "app.tcss"
    TITLE = "watchkeeper"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit", tooltip="Quit (asks first when runs are in flight)"),
        Binding("question_mark", "help", "Help", key_display="?", tooltip="All the keys"),
    ]

    def __init__(
        self,
        config: Config,
        client: KeeperClient,
        *,
        frozen_now: datetime | None = None,
        theme_dirs: list[Path] | None = None,
        redraw_interval: float = REDRAW_INTERVAL,
        snapshot_interval: float = SNAPSHOT_INTERVAL,
        notices: Iterable[str] = (),
    ) -> None:
        # NO_COLOR: Textual's own answer is greys (its Monochrome filter: still colour codes);
        # as an ANSI app it drops every colour instead (its NoColor filter).
        super().__init__(ansi_color=True if "NO_COLOR" in os.environ else None)
        one_malloc_arena()
        self.config = config
        self.session = KeeperSession(client)
        self.vault = config.vault
        self.clock = Clock.from_env(config.keeper.tz, frozen_now)
        self.model = Model(config.vault)
        self.model.attached_pid = client.pid if client.mode == "attach" else None
        self.bridge = KeeperBridge(self)
        self.read = Readers(self)
        self.ops = Operations(self, self.read)
        self.redraw_interval = redraw_interval
        self.snapshot_interval = snapshot_interval
        self.notices = list(notices)
        """Said once the console is up: the first-run note that the demo vault was made."""
        self.flushes = 0
        self.created = time.time()
        self.closing = False
        self.waiting_for_runs = False  # quitting, letting the runs in flight finish
        self.main: MainScreen = None  # type: ignore[assignment]
        """The panes live here; detail screens come and go above it. Made with the
        default screen: widgets need the running app."""
        self._log_follow_timer: Any = None
        if "TEXTUAL_ANIMATIONS" not in os.environ:
            self.animation_level = "none"  # frugal over SSH: nothing slides or fades
        themes, self.theme_problems = discover(
            theme_dirs if theme_dirs is not None else [shipped_dir(), user_themes_dir()]
        )
        self.our_themes = sorted(theme.name for theme in themes)
        for theme in themes:
            self.register_theme(theme)
        state = load_state(config.vault)
        self.model.own_paused = set(state.paused_jobs)
        self.model.global_paused = state.paused
        self.saved_theme = state.theme
        self._theme_ready = False

    @property
    def client(self) -> KeeperClient:
        return self.session.client

    @property
    def keeper_started(self) -> bool:
        return self.session.started

    @property
    def closed(self) -> bool:
        return self.session.closed

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        # A blinking cursor redraws twice a second (over SSH too) and makes screenshots
        # differ: every input here, the command palette's included, holds still.
        if isinstance(event.widget, Input):
            event.widget.cursor_blink = False

    # ---- start and stop ---------------------------------------------------------------

    def get_default_screen(self) -> MainScreen:
        self.main = MainScreen(self.clock, self.model, self.ops)
        return self.main

    def on_mount(self) -> None:
        wanted = self.saved_theme or DEFAULT_THEME
        if wanted in self.available_themes:
            self.theme = wanted
        else:
            if DEFAULT_THEME in self.available_themes:
                self.theme = DEFAULT_THEME
            self.notify(f"theme {wanted!r} not found; using {self.theme}", severity="warning")
        self._theme_ready = True
        for problem in self.theme_problems:
            self.notify(str(problem), title="theme skipped", severity="warning", timeout=10)
        for notice in self.notices:
            self.notify(notice, timeout=15)
        self.session.begin()
        self._start_keeper()
        self.read.vault()
        self.read.starts()
        self.set_interval(self.redraw_interval, self.redraw)
        if self.clock.frozen is None:
            self.set_interval(1.0, self.tick)
        self.set_interval(self.snapshot_interval, self.refresh_snapshot)

    @work(thread=True, group="keeper", exit_on_error=False)
    def _start_keeper(self) -> None:
        try:
            snapshot = self.session.start(self.bridge.on_event)
        except Exception as error:  # a keeper that cannot start leaves nothing to show
            self.call_from_thread(self._keeper_failed, error)
            return
        self.call_from_thread(self.model.load_snapshot, snapshot, self.clock.now())

    def _keeper_failed(self, error: BaseException) -> None:
        with contextlib.suppress(Exception):  # its loop may be gone already
            self.session.close(end_runs=True)
        self.exit(2, message=f"watchkeeper: the keeper did not start: {error}")

    def refresh_snapshot(self) -> None:
        self.read.snapshot()

    def action_quit(self) -> None:  # type: ignore[override]
        """q, ctrl+q and the palette's Quit: ask first when runs are in flight."""
        running = self.model.running_count
        if self.closing:
            if self.waiting_for_runs and running:
                # Chose to wait, then thought better of it: offer to end them now.
                question = f"{runs_are(running)} still in flight. Stop now instead of waiting?"
                self.push_screen(ConfirmScreen(question), self._stop_instead)
            else:
                self.notify("stopping the keeper …")
            return
        # Attached, the keeper is not ours to stop: quitting only disconnects.
        if not running or self.client.mode == "attach" or not self.keeper_started:
            self.shutdown(end_runs=False)
            return

        def answer(choice: str | None) -> None:
            if choice is not None:
                self.shutdown(end_runs=choice == "stop")

        self.push_screen(QuitScreen(running), answer)

    def _stop_instead(self, yes: bool | None) -> None:
        if yes:
            self._end_runs_now()

    def shutdown(self, end_runs: bool) -> None:
        self.closing = True
        self.waiting_for_runs = not end_runs and self.client.mode == "owner"
        self.model.state = "STOPPING"
        self.model.dirty.add("header")
        self._close_keeper(end_runs)

    @work(thread=True, group="hurry", exit_on_error=False)
    def _end_runs_now(self) -> None:
        self.waiting_for_runs = False
        self.client.close(end_runs=True)

    @work(thread=True, group="close", exclusive=True, exit_on_error=False)
    def _close_keeper(self, end_runs: bool) -> None:
        self.session.close(end_runs)
        self.call_from_thread(self.exit, 0)

    async def on_unmount(self) -> None:
        # Leaving by any other way (an error, a test ending) still ends the keeper's runs
        # and frees the lock.
        if not self.closed:
            await asyncio.to_thread(self.session.close, True)

    # ---- keeper events ----------------------------------------------------------------

    @on(KeeperMessage)
    def _keeper_message(self, message: KeeperMessage) -> None:
        now = self.clock.now()
        if isinstance(message, LogLines):
            for line in self.bridge.take_lines():
                self.model.apply("log_line", line, now)
            return
        self.bridge.handled()
        kind = KIND_OF.get(type(message))
        if kind == "keeper_state" and message.data.get("state") == "GONE":
            self._keeper_gone(message.data.get("pid"))
            return
        if kind == "resync":
            self._resync()
            return
        if kind is None:
            return
        self.model.apply(kind, message.data, now)
        if kind == "config_error":
            self.notify(
                "\n".join(self.model.config_issues[:5]),
                title="config reload refused; the running config stays",
                severity="error",
                timeout=15,
            )
        elif kind == "keeper_state" and self._theme_ready:
            # A pause saves the keeper's state file, theme and all: keep ours in it.
            self._persist_theme(self.theme)

    def _keeper_gone(self, pid: Any) -> None:
        if self.closing or self.client.mode != "attach":
            return
        self.session.started = False
        self.model.apply("keeper_state", {"state": "STOPPED"}, self.clock.now())
        self.model.attached_pid = None
        self.redraw()

        def answer(yes: bool | None) -> None:
            if yes:
                self._take_over()
            else:
                self.notify("no keeper runs this vault; q quits", severity="warning", timeout=10)

        question = f"Keeper pid {pid} went away. Take over and run the keeper in this console?"
        if self.config.cluster is not None:  # take_over attaches: a keeper here would be unfenced
            question = (
                f"Keeper pid {pid} went away. Wait, then attach to the keeper that leads"
                " the cluster (or a standby)?"
            )
        self.push_screen(ConfirmScreen(question), answer)

    @work(thread=True, group="keeper", exclusive=True, exit_on_error=False)
    def _take_over(self) -> None:
        found = self.session.take_over(self.config.path, lambda: self.closing)
        if isinstance(found, str):
            self.call_from_thread(
                self.notify, f"cannot take over: {found}", severity="error", timeout=10
            )
            return
        self.call_from_thread(self._adopt, found)

    def _adopt(self, client: KeeperClient) -> None:
        self.session.adopt(client)
        if isinstance(client, InProcessClient):
            self.config = client.config
        # A keeper that starts has read the config whole: no refusal stands.
        self.model.config_issues = []
        self.model.attached_pid = client.pid if client.mode == "attach" else None
        self.model.dirty.add("header")
        self.notify(
            f"attached to keeper pid {client.pid}"
            if client.mode == "attach"
            else "this console now runs the keeper"
        )
        self._start_keeper()

    def _resync(self) -> None:
        self.refresh_snapshot()
        self.read.vault()
        if self.main.is_mounted:
            self.main.history_pane.request()
            self.main.log_pane.reload()

    # ---- drawing ------------------------------------------------------------------------

    def redraw(self) -> None:
        """Draw whatever changed since the last redraw, all in one batch."""
        if not self.main.is_mounted:
            return
        dirty = self.model.take()
        if not dirty:
            return
        palette = palette_from(self.current_theme)
        model, main = self.model, self.main
        with self.batch_update():
            if "header" in dirty:
                main.header.show(model, self.clock)
            if "jobs" in dirty:
                if model.jobs_reshaped:
                    model.jobs_reshaped = False
                    main.jobs_pane.rebuild(model, self.clock, palette)
                else:
                    main.jobs_pane.update_jobs(model, model.dirty_jobs, self.clock, palette)
                model.dirty_jobs.clear()
            if "history" in dirty:
                main.history_pane.apply(list(model.history_updates.values()))
                model.history_updates.clear()
                main.history_pane.draw(self.clock, palette)
            if "vault" in dirty:
                main.vault_pane.draw(model)
            if "quota" in dirty:
                main.quota_pane.draw(model, self.clock)
            if "log" in dirty:
                lines = list(model.log_lines)
                model.log_lines.clear()
                main.log_pane.add(lines)
        self.flushes += 1

    def tick(self) -> None:
        """Once a second: texts that change with time alone (uptime, elapsed, frees in)."""
        self.model.dirty.update(("header", "quota"))
        running = [job.name for job in self.model.jobs.values() if job.running]
        if running:
            self.model.dirty_jobs.update(running)
            self.model.dirty.add("jobs")

    def watch_theme(self, theme: str) -> None:
        if self._theme_ready:
            self.model.jobs_reshaped = True
            self.model.dirty.update(("jobs", "history", "quota"))
            if self.main.is_mounted:
                self.main.history_pane.relayout()
            self._persist_theme(theme)

    @work(thread=True, group="theme", exclusive=True, exit_on_error=False)
    def _persist_theme(self, theme: str) -> None:
        if load_state(self.vault).theme == theme:
            return
        try:
            update_state(self.vault, lambda state: setattr(state, "theme", theme))
        except OSError as error:
            self.call_from_thread(
                self.notify, f"cannot save the theme: {error.strerror}", severity="warning"
            )

    def pick_theme(self) -> None:
        """Our themes only (shipped and the operator's own), not Textual's built-in ones."""
        self.search_commands(
            [
                (name, lambda name=name: setattr(self, "theme", name), f"Use {name}")
                for name in self.our_themes
            ],
            placeholder="Theme…",
        )

    # ---- panes asking for data ----------------------------------------------------------

    @on(HistoryPane.Wanted)
    def _history_wanted(self, message: HistoryPane.Wanted) -> None:
        pane = self.main.history_pane
        request = message.request

        def show(records: list[dict[str, Any]], full: bool) -> None:
            pane.show_page(request, records, full)
            self.model.dirty.add("history")

        query = hist.Query(job=message.job, status=message.status, limit=message.limit)
        self.read.history(query, show)

    @on(LogPane.Wanted)
    def _log_wanted(self, message: LogPane.Wanted) -> None:
        self.bridge.log_source = message.source
        pane, request = self.main.log_pane, message.request
        self.read.log(message.source, lambda lines: pane.show_tail(request, lines))

    @on(FilterChanged)
    def _filter_changed(self, message: FilterChanged) -> None:
        if isinstance(message.pane, JobsPane):
            self.model.jobs_reshaped = True
            self.model.dirty.add("jobs")
        elif isinstance(message.pane, HistoryPane):
            value = message.pane.filter_input.value
            message.pane.set_filter(value, list(self.model.jobs))

    @on(JobsPane.Details)
    def _job_details(self, message: JobsPane.Details) -> None:
        self.open_job(message.job)

    @on(HistoryPane.Details)
    def _run_details(self, message: HistoryPane.Details) -> None:
        self.open_run(message.record)

    @on(VaultPane.Details)
    def _file_details(self, message: VaultPane.Details) -> None:
        self.open_file(message.relative)

    @on(JobsPane.Highlighted)
    def _job_highlighted(self, message: JobsPane.Highlighted) -> None:
        log = self.main.log_pane
        if log.job_mode and message.job:
            # Debounced: holding the arrow key down must not read a tail per row.
            if self._log_follow_timer is not None:
                self._log_follow_timer.stop()
            job = message.job
            self._log_follow_timer = self.set_timer(0.3, lambda: log.set_source(job))

    # ---- detail screens -------------------------------------------------------------------

    def open_job(self, name: str) -> None:
        view = job_view(self.model.jobs.get(name))
        self.push_screen(
            JobScreen(name, self.config.path, self.config.jobs.get(name), view, self.clock)
        )

    def open_run(self, record: dict[str, Any]) -> None:
        log = self.vault / "Logs" / "jobs" / f"{record.get('taskId')}.log"
        self.push_screen(RunOutputScreen(record, log, self.clock))

    def open_file(self, relative: str) -> None:
        self.push_screen(VaultFileScreen(self.vault, relative))

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss(None)
        else:
            self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        if isinstance(screen, MainScreen):
            yield from screen_commands(screen)
        yield SystemCommand("Theme", "The console's colours (kept in state.toml)", self.pick_theme)
        yield SystemCommand("Help", "Every key on one screen (?)", self.action_help)
        yield SystemCommand("Quit", "Quit; asks first if runs are in flight (q)", self.action_quit)


def make_app(config: Config, client: KeeperClient | None = None, **options: Any) -> ConsoleApp:
    """The console for `config`'s vault. Without a client it takes the vault's lock
    (core.lock.LockHeld when another keeper holds it) and runs the keeper in-process.

    Options: frozen_now (a datetime; also $WATCHKEEPER_CONSOLE_NOW) freezes every
    clock-dependent text for snapshots; theme_dirs replaces where themes are looked for;
    redraw_interval and snapshot_interval tune the coalescing; notices are said once the
    console is up.
    """
    if client is None:
        client = connect(config)
    return ConsoleApp(config, client, **options)


def run_console(config: Config, notices: Iterable[str] = ()) -> int:
    """Open the console on a terminal; returns the exit code."""
    app = make_app(config, notices=notices)
    code = app.run()
    return code if isinstance(code, int) else 0
