"""A job: its config (read again from the file), its state in the keeper and its next
fire times."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table as RichTable
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.widgets import Footer, Static

from watchkeeper.core.config import ConfigError, JobConfig, load_config
from watchkeeper.core.firetimes import FireTime
from watchkeeper.core.firetimes import fire_times as next_fire_times
from watchkeeper.core.history import status_label
from watchkeeper.core.jobinfo import config_rows
from watchkeeper.core.units import format_duration
from watchkeeper.tui.model import JobRow
from watchkeeper.tui.screens.details import DetailScreen, Scroll
from watchkeeper.tui.text import Clock, parse_time

FIRE_TIMES = 5


def fire_times(
    job: JobConfig | None, view: dict[str, Any] | None, clock: Clock, count: int = FIRE_TIMES
) -> list[FireTime]:
    """The next `count` slots of a job, as `watchkeeper describe` lists them."""
    return next_fire_times(job, view, clock.now(), clock.tz, count)  # type: ignore[arg-type]


def job_view(job: JobRow | None) -> dict[str, Any]:
    """What the keeper last told of a job, as the screen shows it."""
    if job is None:
        return {}
    return {
        "paused": job.paused,
        "last": job.last,
        "next_run": job.next_run.isoformat() if job.next_run else None,
        "running": [{"id": run_id} for run_id in job.running],
    }


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
        with Scroll(id="job-scroll"):
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
            for key, value in config_rows(job, self.config_path.name):
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
