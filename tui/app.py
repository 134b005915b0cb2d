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
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from textual import events, on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Grid
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Input

from core import history as hist
from core.client import InProcessClient, KeeperClient, SocketClient
from core.config import Config, ConfigError, load_config
from core.control import ControlUnavailable
from core.locations import user_themes_dir
from core.lock import LockHeld, acquire, holder
from core.quota import started as run_counted
from core.resume import ResumePlan
from core.state import load_state, update_state
from core.tail import last_lines
from core.vault import summarize_all
from tui.messages import MESSAGES, KeeperBridge, KeeperMessage, LogLines
from tui.model import Model
from tui.panes import (
    FilterChanged,
    HeaderBar,
    HistoryPane,
    JobsPane,
    LogPane,
    Pane,
    QuotaPane,
    VaultPane,
    palette_from,
)
from tui.resume_dialog import ResumeScreen
from tui.screens import (
    ConfirmScreen,
    HelpScreen,
    JobScreen,
    QuitScreen,
    RunOutputScreen,
    VaultFileScreen,
    runs_are,
)
from tui.text import Clock, compact_stamp
from tui.themes import DEFAULT_THEME, discover, shipped_dir

REDRAW_INTERVAL = 0.1
"""Dirty panes are redrawn at most this often: ten frames a second at the very most."""
SNAPSHOT_INTERVAL = 2.0
"""Next-run times move without an event (a slot fired); a snapshot picks them up."""
LOG_TAIL = 500
START_WAIT = 60.0
TAKEOVER_WAIT = 10.0
ATTACH_WAIT = 3.0
PANE_ORDER = ("jobs-pane", "vault-pane", "history-pane", "log-pane", "quota-pane")
KIND_OF = {message: kind for kind, message in MESSAGES.items()}


class QuietFooter(Footer):
    """A footer that is rebuilt only when the keys it shows change. Every pane offers the
    same keys, so moving between panes costs no rebuild, and sends nothing over SSH."""

    _shown: tuple[tuple[str, str, bool], ...] | None = None

    def bindings_changed(self, screen: Screen) -> None:
        shown = tuple(
            (binding.key, binding.description, enabled)
            for _, binding, enabled, _ in screen.active_bindings.values()
            if binding.show
        )
        if shown == self._shown:
            return
        if screen.app.app_focus:
            self._shown = shown
        super().bindings_changed(screen)


class MainScreen(Screen[None]):
    """The five panes, the header and the footer."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "app.run_job", "Run", tooltip="Run the selected job now"),
        Binding("p", "app.pause_job", "Pause", tooltip="Pause or resume the selected job"),
        Binding("P", "app.pause_all", "Pause all", tooltip="Pause or resume everything"),
        Binding("x", "app.cancel_run", "Cancel", tooltip="Cancel the selected run (asks first)"),
        Binding("slash", "app.filter", "Filter", key_display="/", tooltip="Filter jobs or history"),
        Binding("f", "app.follow", "Follow", tooltip="Follow the log on or off"),
        Binding(
            "enter",
            "app.details",
            "Details",
            show=False,
            tooltip="Details: a job, a run's output, a vault file; on the Log: keeper/job log",
        ),
        Binding("tab", "app.next_pane", "Next pane", show=False, tooltip="Next pane"),
        Binding(
            "shift+tab", "app.previous_pane", "Previous pane", show=False, tooltip="Previous pane"
        ),
        Binding("1", "app.focus_pane(1)", "Jobs", show=False, tooltip="Jobs pane"),
        Binding("2", "app.focus_pane(2)", "Vault", show=False, tooltip="Vault pane"),
        Binding("3", "app.focus_pane(3)", "History", show=False, tooltip="History pane"),
        Binding("4", "app.focus_pane(4)", "Log", show=False, tooltip="Log pane"),
        Binding("5", "app.focus_pane(5)", "Quota", show=False, tooltip="Quota pane"),
    ]
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-narrow"), (110, "-wide")]
    VERTICAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-short"), (34, "-tall")]

    def __init__(self) -> None:
        super().__init__()
        # Kept, not queried: the app reaches them ten times a second, and a query fails
        # while the screen is being torn down.
        self.header = HeaderBar(id="header")
        self.jobs_pane = JobsPane()
        self.vault_pane = VaultPane()
        self.history_pane = HistoryPane()
        self.quota_pane = QuotaPane()
        self.log_pane = LogPane()

    def compose(self) -> ComposeResult:
        yield self.header
        with Grid(id="body"):
            yield self.jobs_pane
            yield self.vault_pane
            yield self.history_pane
            yield self.quota_pane
            yield self.log_pane
        yield QuietFooter(compact=True)

    def on_mount(self) -> None:
        self.query_one("#jobs", Widget).focus()

    def on_descendant_focus(self, event: Any) -> None:
        pane = self.focused_pane()
        if pane is not None and pane.id in PANE_ORDER:
            wanted = f"focus-{PANE_ORDER.index(pane.id) + 1}"
            body = self.query_one("#body")
            if not body.has_class(wanted):
                body.set_classes(wanted)  # one restyle, not one per class

    def focused_pane(self) -> Pane | None:
        node = self.focused
        while node is not None and not isinstance(node, Pane):
            node = node.parent  # type: ignore[assignment]
        return node


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
    ) -> None:
        # NO_COLOR: Textual's own answer is greys (its Monochrome filter: still colour codes);
        # as an ANSI app it drops every colour instead (its NoColor filter).
        super().__init__(ansi_color=True if "NO_COLOR" in os.environ else None)
        _one_malloc_arena()
        self.config = config
        self.client = client
        self.vault = config.vault
        self.clock = Clock.from_env(config.keeper.tz, frozen_now)
        self.model = Model(config.vault)
        self.model.attached_pid = client.pid if client.mode == "attach" else None
        self.bridge = KeeperBridge(self)
        self.redraw_interval = redraw_interval
        self.snapshot_interval = snapshot_interval
        self.flushes = 0
        self.created = time.time()
        self.keeper_started = False
        self._starting = False
        self._start_done = threading.Event()
        self.closing = False
        self.waiting_for_runs = False  # quitting, letting the runs in flight finish
        self.closed = False
        self.main: MainScreen = None  # type: ignore[assignment]
        """The panes live here; detail screens come and go above it. Made with the
        default screen: widgets need the running app."""
        self._log_follow_timer: Any = None
        if "TEXTUAL_ANIMATIONS" not in os.environ:
            self.animation_level = "none"  # frugal over SSH: nothing slides or fades
        themes, self.theme_problems = discover(
            theme_dirs if theme_dirs is not None else [shipped_dir(), user_themes_dir()]
        )
        for theme in themes:
            self.register_theme(theme)
        state = load_state(config.vault)
        self.model.own_paused = set(state.paused_jobs)
        self.model.global_paused = state.paused
        self.saved_theme = state.theme
        self._theme_ready = False

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        # A blinking cursor redraws twice a second (over SSH too) and makes screenshots
        # differ: every input here, the command palette's included, holds still.
        if isinstance(event.widget, Input):
            event.widget.cursor_blink = False

    # ---- start and stop ---------------------------------------------------------------

    def get_default_screen(self) -> MainScreen:
        self.main = MainScreen()
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
        self._starting = True
        self._start_keeper()
        self._scan_vault()
        self._load_starts()
        self.set_interval(self.redraw_interval, self.redraw)
        if self.clock.frozen is None:
            self.set_interval(1.0, self.tick)
        self.set_interval(self.snapshot_interval, self._refresh_snapshot)

    @work(thread=True, group="keeper", exit_on_error=False)
    def _start_keeper(self) -> None:
        try:
            self.client.start(self.bridge.on_event)
            snapshot = self.client.snapshot()
        except Exception as error:  # a keeper that cannot start leaves nothing to show
            self._start_done.set()
            self.call_from_thread(self._keeper_failed, error)
            return
        self.keeper_started = True
        self._start_done.set()
        self.call_from_thread(self._take_snapshot, snapshot)

    def _keeper_failed(self, error: BaseException) -> None:
        self.closed = True
        with contextlib.suppress(Exception):  # its loop may be gone already
            self.client.close()
        self.exit(2, message=f"watchkeeper: the keeper did not start: {error}")

    def _take_snapshot(self, snapshot: dict[str, Any], ended: set[str] | None = None) -> None:
        self.model.load_snapshot(snapshot, self.clock.now(), ended)

    def _refresh_snapshot(self) -> None:
        if self.keeper_started and not self.closing:
            self._read_snapshot(set(self.model.ended))

    @work(thread=True, group="snapshot", exclusive=True, exit_on_error=False)
    def _read_snapshot(self, ended: set[str]) -> None:
        try:
            snapshot = self.client.snapshot()
        except Exception:
            return  # the keeper is stopping; the next snapshot or event will tell
        if not self.closing:
            self.call_from_thread(self._take_snapshot, snapshot, ended)

    @work(thread=True, group="vault", exclusive=True, exit_on_error=False)
    def _scan_vault(self) -> None:
        folders = {
            summary.name: {"count": summary.count, "newest": list(summary.newest)}
            for summary in summarize_all(self.vault)
        }
        self.call_from_thread(self.model.set_folders, folders)

    @work(thread=True, group="starts", exit_on_error=False)
    def _load_starts(self) -> None:
        # Runs from before the console came up; the keeper reports every later one
        # (its event stream opens before it starts anything).
        now = time.time()
        since = datetime.fromtimestamp(now - 3600).astimezone()
        records = hist.runs_since(self.vault / "Logs" / "history", since).records
        starts = [
            record.started_at.timestamp()
            for record in records
            if run_counted(record) and record.started_at.timestamp() < self.created
        ]
        self.call_from_thread(self.model.set_starts, starts, now)

    def action_quit(self) -> None:  # type: ignore[override]
        """q, ctrl+q and the palette's Quit: ask first when runs are in flight."""
        running = self.model.running_count
        if self.closing:
            if self.waiting_for_runs and running:
                # Chose to wait, then thought better of it: offer to end them now.
                question = f"{runs_are(running)} still in flight. Stop now instead of waiting?"
                self.push_screen(
                    ConfirmScreen(question), lambda yes: self._end_runs_now() if yes else None
                )
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
        self._close_client(end_runs)
        self.call_from_thread(self.exit, 0)

    def _close_client(self, end_runs: bool) -> None:
        # A quit while the keeper is still starting waits for the start: closing half a
        # start would free the lock under a keeper that goes on.
        if self._starting:
            self._start_done.wait(START_WAIT)
        if self.closed:
            return
        self.closed = True
        self.client.close(end_runs=end_runs)

    async def on_unmount(self) -> None:
        # Leaving by any other way (an error, a test ending) still ends the keeper's runs
        # and frees the lock.
        if not self.closed:
            await asyncio.to_thread(self._close_client, True)

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

    # ---- the attached keeper going away ----------------------------------------------------

    def _keeper_gone(self, pid: Any) -> None:
        if self.closing or self.client.mode != "attach":
            return
        self.keeper_started = False
        self.model.apply("keeper_state", {"state": "STOPPED"}, self.clock.now())
        self.model.attached_pid = None
        self.redraw()

        def answer(yes: bool | None) -> None:
            if yes:
                self._take_over()
            else:
                self.notify("no keeper runs this vault; q quits", severity="warning", timeout=10)

        self.push_screen(
            ConfirmScreen(
                f"Keeper pid {pid} went away. Take over and run the keeper in this console?"
            ),
            answer,
        )

    @work(thread=True, group="keeper", exclusive=True, exit_on_error=False)
    def _take_over(self) -> None:
        """Own the vault once the lock is free; if another keeper got there first (say
        systemd restarted it), attach to that one instead."""
        deadline = time.monotonic() + TAKEOVER_WAIT
        client: KeeperClient | None = None
        problem = "the lock stayed taken"
        while client is None and time.monotonic() < deadline and not self.closing:
            try:
                config = load_config(self.config.path)
                client = InProcessClient(config, acquire(self.vault))
            except ConfigError as error:
                problem = f"{len(error.issues)} error(s) in {self.config.path}"
                break
            except LockHeld:
                with contextlib.suppress(ControlUnavailable):
                    client = SocketClient(self.vault)
                if client is None:
                    time.sleep(0.1)  # the old keeper is still letting go of its lock
        if client is None:
            self.call_from_thread(
                self.notify, f"cannot take over: {problem}", severity="error", timeout=10
            )
            return
        self.call_from_thread(self._adopt, client)

    def _adopt(self, client: KeeperClient) -> None:
        self.client = client
        self.closed = False
        self.model.attached_pid = client.pid if client.mode == "attach" else None
        self.model.dirty.add("header")
        self.notify(
            f"attached to keeper pid {client.pid}"
            if client.mode == "attach"
            else "this console now runs the keeper"
        )
        self._starting = True
        self._start_done.clear()
        self._start_keeper()

    def _resync(self) -> None:
        self._refresh_snapshot()
        self._scan_vault()
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
        model = self.model
        with self.batch_update():
            if "header" in dirty:
                self.main.header.show(model, self.clock)
            if "jobs" in dirty:
                jobs = self.main.jobs_pane
                if model.jobs_reshaped:
                    model.jobs_reshaped = False
                    jobs.rebuild(model, self.clock, palette)
                else:
                    jobs.update_jobs(model, model.dirty_jobs, self.clock, palette)
                model.dirty_jobs.clear()
            if "history" in dirty:
                history = self.main.history_pane
                history.apply(list(model.history_updates.values()))
                model.history_updates.clear()
                history.draw(self.clock, palette)
            if "vault" in dirty:
                self.main.vault_pane.draw(model)
            if "quota" in dirty:
                self.main.quota_pane.draw(model, self.clock)
            if "log" in dirty:
                lines = [
                    (source, compact_stamp(line, self.clock)) for source, line in model.log_lines
                ]
                model.log_lines.clear()
                self.main.log_pane.add(lines)
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

    # ---- panes asking for data ----------------------------------------------------------

    @on(HistoryPane.Wanted)
    def _history_wanted(self, message: HistoryPane.Wanted) -> None:
        self._read_history(message.request, message.job, message.status, message.limit)

    @work(thread=True, group="history", exclusive=True, exit_on_error=False)
    def _read_history(self, request: int, job: str | None, status: str | None, limit: int) -> None:
        result = self.client.history(hist.Query(job=job, status=status, limit=limit))
        records = [record.to_json() for record in result.records]
        self.call_from_thread(self._show_history, request, records, len(records) >= limit)

    def _show_history(self, request: int, records: list[dict[str, Any]], full: bool) -> None:
        self.main.history_pane.show_page(request, records, full)
        self.model.dirty.add("history")

    @on(LogPane.Wanted)
    def _log_wanted(self, message: LogPane.Wanted) -> None:
        self.bridge.log_source = message.source
        self._read_log(message.request, message.source)

    @work(thread=True, group="log", exclusive=True, exit_on_error=False)
    def _read_log(self, request: int, source: str) -> None:
        lines = [
            compact_stamp(line, self.clock) for line in last_lines(self.log_path(source), LOG_TAIL)
        ]
        self.call_from_thread(self.main.log_pane.show_tail, request, lines)

    def log_path(self, source: str) -> Path:
        logs = self.vault / "Logs"
        return logs / "watchkeeper.log" if source == "keeper" else logs / "jobs" / f"{source}.log"

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
        self.push_screen(VaultFileScreen(self.vault, message.relative))

    @on(JobsPane.Highlighted)
    def _job_highlighted(self, message: JobsPane.Highlighted) -> None:
        log = self.main.log_pane
        if log.job_mode and message.job:
            # Debounced: holding the arrow key down must not read a tail per row.
            if self._log_follow_timer is not None:
                self._log_follow_timer.stop()
            job = message.job
            self._log_follow_timer = self.set_timer(0.3, lambda: log.set_source(job))

    def open_job(self, name: str) -> None:
        job = self.model.jobs.get(name)
        view: dict[str, Any] = {}
        if job is not None:
            view = {
                "paused": job.paused,
                "last": job.last,
                "next_run": job.next_run.isoformat() if job.next_run else None,
                "running": [{"id": run_id} for run_id in job.running],
            }
        self.push_screen(
            JobScreen(name, self.config.path, self.config.jobs.get(name), view, self.clock)
        )

    def open_run(self, record: dict[str, Any]) -> None:
        log = self.vault / "Logs" / "jobs" / f"{record.get('taskId')}.log"
        self.push_screen(RunOutputScreen(record, log, self.clock))

    # ---- what is selected -----------------------------------------------------------------

    def focused_pane(self) -> Pane | None:
        screen = self.screen
        return screen.focused_pane() if isinstance(screen, MainScreen) else None

    def selected_job(self) -> str | None:
        pane = self.focused_pane()
        if isinstance(pane, HistoryPane):
            record = pane.selected()
            if record is not None:
                return record.get("taskId")
        return self.main.jobs_pane.selected

    def selected_run(self) -> tuple[str, str] | None:
        """(run id, job) of the run `x` would cancel."""
        pane = self.focused_pane()
        if isinstance(pane, HistoryPane):
            record = pane.selected()
            if record is not None and record.get("status") == "running":
                return record["id"], record["taskId"]
        name = self.selected_job()
        job = self.model.jobs.get(name) if name else None
        if job is None or not job.running:
            return None
        run_id = min(job.running, key=lambda key: job.running[key])
        return run_id, job.name

    # ---- actions ----------------------------------------------------------------------------

    def action_run_job(self) -> None:
        job = self.selected_job()
        if job is None:
            self.notify("no job selected", severity="warning")
            return
        self._call(f"run {job}", self.client.run_now, job)

    def action_pause_job(self) -> None:
        job = self.selected_job()
        if job is None:
            self.notify("no job selected", severity="warning")
            return
        if self.model.is_own_paused(job):
            self._preview_resume(job)
            return
        self.model.own_paused.add(job)
        self._call(f"pause {job}", self.client.pause, job)
        self._show_paused(job)

    def _show_paused(self, job: str | None) -> None:
        if job is not None:
            self.model.dirty_jobs.add(job)
            self.model.dirty.add("jobs")
        # A key's own effect shows at once; only the keeper's stream waits for the tick.
        self.redraw()

    def action_pause_all(self) -> None:
        if self.model.global_paused:
            self._preview_resume(None)
        else:
            self._call("pause everything", self.client.pause, None)

    @work(thread=True, group="command", exit_on_error=False)
    def _preview_resume(self, job: str | None) -> None:
        """Resume at once when nothing piled up; else show what would fire and ask."""
        what = f"resume {job or 'everything'}"
        if not self.keeper_started or self.closing:
            self.call_from_thread(self.notify, f"cannot {what}: the keeper is not running")
            return
        try:
            plan = self.client.resume_plan(job)
        except Exception as error:
            self.call_from_thread(self.notify, f"{what} failed: {error}", severity="error")
            return
        if plan.runs:
            self.call_from_thread(self._ask_resume, job, plan)
        else:
            self.call_from_thread(self._resume, job, True)

    def _ask_resume(self, job: str | None, plan: ResumePlan) -> None:
        def answer(choice: str | None) -> None:
            if choice is not None:
                self._resume(job, choice == "with")

        self.push_screen(ResumeScreen(plan), answer)

    def _resume(self, job: str | None, missed: bool) -> None:
        what = f"resume {job or 'everything'}" + ("" if missed else " without missed runs")
        if job is not None:
            self.model.own_paused.discard(job)
        self._call(what, self.client.resume, job, missed)
        self._show_paused(job)

    def action_cancel_run(self) -> None:
        target = self.selected_run()
        if target is None:
            self.notify("no run of the selected job is in flight", severity="warning")
            return
        run_id, job = target

        def answer(yes: bool | None) -> None:
            if yes:
                self._call(f"cancel run {run_id}", self.client.cancel, run_id)

        self.push_screen(ConfirmScreen(f"Cancel run {run_id} of {job}?"), answer)

    @work(thread=True, group="command", exit_on_error=False)
    def _call(self, what: str, function: Any, *args: Any) -> None:
        """A quick call into the keeper, off the UI thread; its answer as a notice."""
        if not self.keeper_started or self.closing:
            self.call_from_thread(self.notify, f"cannot {what}: the keeper is not running")
            return
        try:
            result = function(*args)
        except Exception as error:
            self.call_from_thread(self.notify, f"{what} failed: {error}", severity="error")
            return
        notice = what
        if isinstance(result, str):
            notice = f"{what}: run {result}"
        elif result is False:
            notice = f"{what}: nothing to cancel any more"
        self.call_from_thread(self.notify, notice, timeout=3)
        self._refresh_snapshot()

    def action_details(self) -> None:
        pane = self.focused_pane()
        if isinstance(pane, JobsPane) and pane.selected:
            self.open_job(pane.selected)
        elif isinstance(pane, HistoryPane) and pane.selected():
            self.open_run(dict(pane.selected() or {}))
        elif isinstance(pane, VaultPane):
            key = pane.main().key_at_cursor()
            if key and not key.endswith("/"):
                self.push_screen(VaultFileScreen(self.vault, key))
        elif isinstance(pane, LogPane):
            self.action_log_source()

    def action_log_source(self) -> None:
        """Switch the Log pane between the keeper's log and the selected job's."""
        log = self.main.log_pane
        job = self.main.jobs_pane.selected
        if log.job_mode or job is None:
            log.job_mode = False
            log.set_source("keeper")
        else:
            log.job_mode = True
            log.set_source(job)

    def action_filter(self) -> None:
        pane = self.focused_pane()
        if not isinstance(pane, HistoryPane):
            pane = self.main.jobs_pane
        field = pane.filter_input
        field.add_class("-open")
        field.focus()

    def action_follow(self) -> None:
        following = self.main.log_pane.toggle_follow()
        self.notify(f"follow log {'on' if following else 'off'}", timeout=2)

    def action_focus_pane(self, number: int) -> None:
        if isinstance(self.screen, MainScreen):
            pane = self.screen.query_one(f"#{PANE_ORDER[number - 1]}", Pane)
            pane.main().focus()

    def _step_pane(self, step: int) -> None:
        pane = self.focused_pane()
        index = PANE_ORDER.index(pane.id) if pane is not None and pane.id in PANE_ORDER else -step
        self.action_focus_pane((index + step) % len(PANE_ORDER) + 1)

    def action_next_pane(self) -> None:
        self._step_pane(1)

    def action_previous_pane(self) -> None:
        self._step_pane(-1)

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss(None)
            return
        keys = [binding for binding in MainScreen.BINDINGS if isinstance(binding, Binding)]
        general = [binding for binding in self.BINDINGS if isinstance(binding, Binding)]
        palette = Binding(
            "ctrl+p",
            "command_palette",
            "Palette",
            tooltip="Command palette: every action, and themes",
        )
        self.push_screen(
            HelpScreen(
                [("Console", keys), ("Everywhere", [*general, palette])],
                [
                    "Details screens close with escape or q.",
                    "In a filter: enter keeps it, escape clears it.",
                    "Statuses: ✔ success ✘ failure ⧗ timeout ↷ skipped ■ cancelled"
                    " ⚡ interrupted ▶ running",
                ],
            )
        )

    # ---- command palette --------------------------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Any:
        yield from super().get_system_commands(screen)
        if isinstance(screen, MainScreen):
            for binding in MainScreen.BINDINGS:
                if not isinstance(binding, Binding) or binding.key in ("tab", "shift+tab"):
                    continue
                action = binding.action.removeprefix("app.")
                yield SystemCommand(
                    f"{binding.tooltip or binding.description}"
                    f" ({binding.key_display or binding.key})",
                    binding.description,
                    lambda action=action: self.run_action(action),
                )
            yield SystemCommand(
                "Log: keeper or job",
                "Switch the Log pane between the keeper's log and the selected job's",
                self.action_log_source,
            )
        yield SystemCommand("Help (?)", "All the keys", self.action_help)
        for name in sorted(self.available_themes):
            if name.startswith("watchkeeper"):
                yield SystemCommand(
                    f"Theme: {name}",
                    "Switch to this theme (kept in Logs/state.toml)",
                    lambda name=name: setattr(self, "theme", name),
                )


M_ARENA_MAX = -8  # glibc's mallopt parameter


def _one_malloc_arena() -> None:
    """glibc gives each allocating thread its own malloc arena and seldom returns their
    freed memory: with the keeper's threads in this process RSS crept ~1.5 MB a minute at
    50 runs/s while Python's heap stayed flat. Python threads allocate under the GIL, so
    one arena costs no contention. Not glibc (macOS): nothing to do."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        mallopt(M_ARENA_MAX, 1)


def make_app(config: Config, client: KeeperClient | None = None, **options: Any) -> ConsoleApp:
    """The console for `config`'s vault. Without a client it takes the vault's lock
    (core.lock.LockHeld when another keeper holds it) and runs the keeper in-process.

    Options: frozen_now (a datetime; also $WATCHKEEPER_CONSOLE_NOW) freezes every
    clock-dependent text for snapshots; theme_dirs replaces where themes are looked for;
    redraw_interval and snapshot_interval tune the coalescing.
    """
    if client is None:
        client = _connect(config)
    return ConsoleApp(config, client, **options)


def _connect(config: Config) -> KeeperClient:
    """Owner when the vault's lock is free, else attached to the keeper holding it.
    ControlUnavailable when that keeper cannot be reached."""
    deadline = time.monotonic() + ATTACH_WAIT
    while True:
        try:
            return InProcessClient(config, acquire(config.vault))
        except LockHeld:
            pass
        try:
            return SocketClient(config.vault)
        except ControlUnavailable:
            if holder(config.vault) is None:
                continue  # it stopped meanwhile: the lock is ours to take
            # A keeper that has just started takes a moment to open its socket.
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def run_console(config: Config) -> int:
    """Open the console on a terminal; returns the exit code."""
    app = make_app(config)
    code = app.run()
    return code if isinstance(code, int) else 0
