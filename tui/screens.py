"""Modal questions and detail screens: a run's output, a vault file, a job, the keys."""

from __future__ import annotations

import contextlib
import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from rich.table import Table as RichTable
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Footer, Log, Markdown, Static

from core.config import ConfigError, JobConfig, load_config
from core.cron import CronSchedule
from core.history import status_label
from core.names import shown
from core.units import format_duration
from core.vault import inside_vault
from tui.panes import QuietLog
from tui.runlog import run_output
from tui.text import Clock, compact_stamp, duration_text, parse_time

PREVIEW_LIMIT = 512 * 1024
"""Bytes of a vault file shown: the preview is for reading notes, not for huge dumps."""
FIRE_TIMES = 5


# ---- questions ------------------------------------------------------------------------


class ConfirmScreen(ModalScreen[bool]):
    """A small yes/no question; No has the focus, so a stray enter changes nothing."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__(classes="dialog-screen")
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(self.question), classes="question")
            with Horizontal(classes="buttons"):
                yield Button("Yes (y)", id="yes", variant="error")
                yield Button("No (n)", id="no", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")


def runs_are(running: int) -> str:
    """ "1 run is", "3 runs are"."""
    return "1 run is" if running == 1 else f"{running} runs are"


class QuitScreen(ModalScreen[str | None]):
    """Runs are in flight: wait for them, stop them, or stay."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("w", "answer('wait')", "Wait for them"),
        Binding("s", "answer('stop')", "Stop them"),
        Binding("escape,c", "answer(None)", "Cancel"),
    ]

    def __init__(self, running: int) -> None:
        super().__init__(classes="dialog-screen")
        self.running = running

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(
                Text(f"{runs_are(self.running)} in flight. Quit anyway?\n"),
                classes="question",
            )
            with Horizontal(classes="buttons"):
                yield Button("Wait for them (w)", id="wait", variant="primary")
                yield Button("Stop them (s)", id="stop", variant="error")
                yield Button("Cancel (c)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def action_answer(self, answer: str | None) -> None:
        self.dismiss(answer)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None if event.button.id == "cancel" else event.button.id)


# ---- details ----------------------------------------------------------------------------


class DetailScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "Back"),
        Binding("q", "dismiss", "Back", show=False),
    ]

    def action_dismiss(self) -> None:
        self.dismiss(None)

    def deliver(self, show: Callable[..., Any], *args: Any) -> None:
        """Hand what a worker read to the screen; if the app quit meanwhile, drop it."""
        with contextlib.suppress(RuntimeError):  # NoActiveAppError, or the app is gone
            self.app.call_from_thread(show, *args)


class RunOutputScreen(DetailScreen):
    """One run: its record, and its output picked out of the job's log by run id."""

    def __init__(self, record: dict[str, Any], log: Path, clock: Clock) -> None:
        super().__init__(classes="detail")
        self.record = record
        self.log_path = log
        self.clock = clock

    def compose(self) -> ComposeResult:
        record = self.record
        started = parse_time(record.get("startedAt"))
        summary = Text(no_wrap=False)
        summary.append(f"{record.get('taskId')}  ", style="bold")
        summary.append(status_label(record.get("status", "?")), style="bold")
        summary.append(f"  run {record.get('id')}\n")
        summary.append(
            f"started {self.clock.short(started)} · {record.get('trigger')}"
            f" attempt {record.get('attempt') or 1}"
            f" · took {duration_text(record.get('duration'))}"
        )
        if record.get("exitCode") is not None:
            summary.append(f" · exit {record['exitCode']}")
        if record.get("error"):
            summary.append(f"\n{record['error']}")
        if record.get("files"):
            # shown: lone surrogates (a name not in UTF-8) break a strict UTF-8 terminal
            summary.append("\nfiles: " + ", ".join(map(shown, record["files"])))
        yield Static(summary, id="run-summary", classes="summary")
        yield QuietLog(id="run-output", highlight=False, auto_scroll=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#run-output", Log).write_line("reading the job's log …")
        self._read()

    @work(thread=True, exclusive=True, exit_on_error=False)
    def _read(self) -> None:
        started = parse_time(self.record.get("startedAt"))
        output = run_output(self.log_path, self.record["id"], started)
        self.deliver(self._show, output.lines, output.truncated)

    def _show(self, lines: list[str], truncated: bool) -> None:
        log = self.query_one("#run-output", Log)
        log.clear()
        if truncated:
            log.write_line("… earlier lines left out")
        shown = [compact_stamp(line, self.clock) for line in lines]
        log.write_lines(shown or ["(no output recorded for this run)"], scroll_end=False)


class VaultFileScreen(DetailScreen):
    """A vault file rendered as Markdown."""

    def __init__(self, vault: Path, relative: str) -> None:
        super().__init__(classes="detail")
        self.vault = vault
        self.relative = relative

    def compose(self) -> ComposeResult:
        yield Static(Text(self.relative, style="bold"), classes="summary")
        with VerticalScroll(id="file-scroll"):
            yield Markdown("", id="file-body")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#file-scroll").focus()
        self._read()

    @work(thread=True, exclusive=True, exit_on_error=False)
    def _read(self) -> None:
        path = self.vault / self.relative
        if not inside_vault(self.vault, path):
            text = f"*{self.relative} points outside the vault; not shown.*"
        else:
            try:
                with path.open("rb") as file:
                    raw = file.read(PREVIEW_LIMIT + 1)
                text = raw[:PREVIEW_LIMIT].decode("utf-8", errors="replace")
                if len(raw) > PREVIEW_LIMIT:
                    text += f"\n\n*… cut at {PREVIEW_LIMIT // 1024} KiB*"
            except OSError as error:
                text = f"*cannot read {self.relative}: {error.strerror or error}*"
        self.deliver(self._show, text)

    async def _show(self, text: str) -> None:
        await self.query_one("#file-body", Markdown).update(text)


@dataclass(frozen=True)
class FireTime:
    moment: datetime
    source: str


def fire_times(
    job: JobConfig | None, view: dict[str, Any] | None, clock: Clock, count: int = FIRE_TIMES
) -> list[FireTime]:
    """The next `count` slots of a job: cron slots from its expression, interval slots
    from the keeper's next run (only the keeper knows an interval's phase)."""
    if job is None or not job.enabled:
        return []
    now = clock.now()
    cron_times = CronSchedule.parse(job.cron).upcoming(now, clock.tz, count) if job.cron else []  # type: ignore[arg-type]
    series: list[Iterable[FireTime]] = [(FireTime(moment, "cron") for moment in cron_times)]
    if job.every is not None:
        next_run = parse_time((view or {}).get("next_run"))
        # The keeper's next run is the interval's slot unless a cron slot comes first;
        # then the interval's phase is not known here, and now + every is a fair guess.
        if next_run is None or (cron_times and next_run.timestamp() >= cron_times[0].timestamp()):
            next_run = now + timedelta(seconds=job.every)
        first = next_run
        series.append(
            FireTime(first + timedelta(seconds=job.every * step), "every") for step in range(count)
        )
    merged = heapq.merge(*series, key=lambda fire: fire.moment.timestamp())
    return [fire for _, fire in zip(range(count), merged, strict=False)]


class JobScreen(DetailScreen):
    """A job's config, its state in the keeper and its next fire times."""

    def __init__(
        self, name: str, config_path: Path, fallback: JobConfig | None, view: dict, clock: Clock
    ) -> None:
        super().__init__(classes="detail")
        self.job_name = name
        self.config_path = config_path
        self.fallback = fallback
        self.view = view
        self.clock = clock

    def compose(self) -> ComposeResult:
        yield Static(Text(f"job {self.job_name}", style="bold"), classes="summary")
        with VerticalScroll(id="job-scroll"):
            yield Static("reading the config …", id="job-body")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#job-scroll").focus()
        self._read()

    @work(thread=True, exclusive=True, exit_on_error=False)
    def _read(self) -> None:
        # The file, not the config the console started with: the keeper may have
        # reloaded it since. A file that no longer loads leaves the one we know.
        job = self.fallback
        note = ""
        try:
            job = load_config(self.config_path).jobs.get(self.job_name, job)
        except ConfigError:
            note = "the config file has errors now; showing the config the console started with"
        self.deliver(self._show, job, note)

    def _show(self, job: JobConfig | None, note: str) -> None:
        self.query_one("#job-body", Static).update(self.render_job(job, note))

    def render_job(self, job: JobConfig | None, note: str) -> RichTable:
        table = RichTable.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        view = self.view
        if note:
            table.add_row("note", Text(note))
        if job is None:
            table.add_row("config", Text("not in the config file"))
        else:
            command = job.command if isinstance(job.command, str) else " ".join(job.command)
            rows: list[tuple[str, str]] = [
                ("command", command),
                ("trigger", job.trigger_summary),
                ("enabled", "yes" if job.enabled else "no (runs only when named)"),
                ("timeout", format_duration(job.timeout) if job.timeout else "none"),
                ("retries", f"{job.retries} (delay {format_duration(job.retry_delay)})"),
                ("overlap", job.overlap),
                ("max per hour", str(job.max_per_hour or "no limit")),
            ]
            if job.on_files:
                rows.append(("settle", format_duration(job.settle)))
                rows.append(("quarantine after", f"{job.quarantine_after} failed runs"))
            if job.cwd:
                rows.append(("cwd", job.cwd))
            if job.env:
                rows.append(("env", ", ".join(sorted(job.env))))
            if job.on_success:
                rows.append(("on_success", str(job.on_success)))
            if job.on_failure:
                rows.append(("on_failure", str(job.on_failure)))
            if job.description:
                rows.append(("description", job.description))
            rows.append(("config line", f"{self.config_path.name}:{job.line}"))
            for key, value in rows:
                table.add_row(key, Text(value))
        paused = view.get("paused")
        table.add_row("paused", Text("yes" if paused else "no"))
        last = view.get("last")
        if last:
            when = self.clock.short(parse_time(last.get("completedAt") or last.get("startedAt")))
            table.add_row("last run", Text(f"{status_label(last['status'])} {when}"))
        if view.get("running"):
            ids = ", ".join(run["id"] for run in view["running"])
            table.add_row("running", Text(f"▶ {ids}"))
        times = fire_times(job, view, self.clock)
        if times:
            lines = Text()
            for index, fire in enumerate(times):
                local = fire.moment.astimezone(self.clock.tz)
                wait = format_duration(self.clock.until(fire.moment))
                if index:
                    lines.append("\n")
                lines.append(f"{local:%Y-%m-%d %H:%M:%S %Z}  in {wait}  ({fire.source})")
            if paused:
                lines.append("\n(paused: these slots are missed until it is resumed)")
            table.add_row(f"next {len(times)}", lines)
        elif job is not None and not job.enabled:
            table.add_row("next runs", Text("none: disabled, it runs only when named"))
        else:
            table.add_row("next runs", Text("no schedule: runs on files, after jobs or by hand"))
        return table


class HelpScreen(DetailScreen):
    """Every key of the console, from the bindings themselves."""

    def __init__(self, sections: list[tuple[str, list[Binding]]], notes: list[str]) -> None:
        super().__init__(classes="detail")
        self.sections = sections
        self.notes = notes

    def compose(self) -> ComposeResult:
        table = RichTable.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for title, bindings in self.sections:
            table.add_row(Text(title, style="underline"), "")
            for binding in bindings:
                keys = binding.key_display or binding.key
                table.add_row(Text(keys), Text(binding.tooltip or binding.description))
            table.add_row("", "")
        for note in self.notes:
            table.add_row("", Text(note))
        yield Static(Text("Keys", style="bold"), classes="summary")
        with VerticalScroll(id="help-scroll"):
            yield Static(table, id="help-body")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#help-scroll").focus()
