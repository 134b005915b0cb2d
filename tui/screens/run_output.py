"""One run: its record, and its output picked out of the job's log by run id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.widgets import Footer, Static

from watchkeeper.core.history import status_label
from watchkeeper.core.names import shown
from watchkeeper.tui.runlog import run_output
from watchkeeper.tui.screens.details import DetailScreen
from watchkeeper.tui.text import Clock, compact_stamp, duration_text, parse_time
from watchkeeper.tui.widgets.log_view import LogView


class RunOutputScreen(DetailScreen):
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
        yield LogView(follow=False, id="run-output")
        yield Footer()

    def on_mount(self) -> None:
        output = self.query_one("#run-output", LogView)
        output.write_lines(["reading the job's log …"])
        output.focus()
        self._read()

    @work(thread=True, exclusive=True, exit_on_error=False)
    def _read(self) -> None:
        started = parse_time(self.record.get("startedAt"))
        output = run_output(self.log_path, self.record["id"], started)
        self.deliver(self._show, output.lines, output.truncated)

    def _show(self, lines: list[str], truncated: bool) -> None:
        log = self.query_one("#run-output", LogView)
        log.clear()
        text = [compact_stamp(line, self.clock) for line in lines]
        if truncated:
            text.insert(0, "… earlier lines left out")
        log.write_lines(text or ["(no output recorded for this run)"])
