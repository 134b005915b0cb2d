"""The Jobs pane: one keyed row a job, updated cell by cell, so a change to one job among
a thousand redraws one row."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.message import Message
from textual.widgets import DataTable, Input

from watchkeeper.tui.model import JobRow, Model
from watchkeeper.tui.text import Clock, parse_time
from watchkeeper.tui.widgets.cells import Palette, plain, status_cell, whole_seconds
from watchkeeper.tui.widgets.filter_input import FilterInput
from watchkeeper.tui.widgets.pane import FilterChanged, Pane
from watchkeeper.tui.widgets.table import ColumnSpec, Table

# At 80 columns: 15 + 16 + 11 + 20 + 10 characters, each with its gap, and the scrollbar.
COLUMNS = [
    ColumnSpec("job", "JOB", 16, flex=1),
    ColumnSpec("trigger", "TRIGGER", 17, flex=2),
    ColumnSpec("next", "NEXT", 12),
    ColumnSpec("last", "LAST", 21),
    ColumnSpec("state", "STATE", 11),
]
KEYS = tuple(spec.key for spec in COLUMNS)


def _matches(job: JobRow, text: str) -> bool:
    return not text or text in job.name.lower() or text in job.trigger.lower()


def _sort_key(job: JobRow, model: Model, column: str) -> Any:
    if column == "trigger":
        return job.trigger
    if column == "next":
        return job.next_run.timestamp() if job.next_run and job.enabled else float("inf")
    if column == "last":
        when = parse_time((job.last or {}).get("completedAt") or (job.last or {}).get("startedAt"))
        return -when.timestamp() if when else float("inf")  # newest first
    if column == "state":
        # Running first, then paused, then the rest.
        return (not job.running, not (job.paused or model.is_own_paused(job.name)), job.name)
    return job.name


class JobsPane(Pane):
    number, pane_name = 1, "Jobs"

    class Details(Message):
        def __init__(self, job: str) -> None:
            super().__init__()
            self.job = job

    class Highlighted(Message):
        def __init__(self, job: str | None) -> None:
            super().__init__()
            self.job = job

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(id="jobs-pane", **kwargs)
        self.filter_text = ""
        self.rebuilds = 0
        self.cells_updated = 0
        """Counters that show updates stay in place (a test and the bench read them)."""
        self.filter_input = FilterInput(
            placeholder="filter jobs: name or trigger", id="jobs-filter"
        )
        self.table = Table(COLUMNS, sortable=KEYS, id="jobs")
        self._model: Model | None = None

    def compose(self) -> ComposeResult:
        yield self.filter_input
        yield self.table

    def main(self) -> Table:
        return self.table

    @property
    def selected(self) -> str | None:
        return self.table.key_at_cursor()

    def cells(self, job: JobRow, model: Model, clock: Clock, palette: Palette) -> list[Text]:
        if not job.enabled:
            next_text = plain("disabled")
        else:
            next_text = plain(clock.short(job.next_run) if job.next_run else "—")
        last = job.last
        if last:
            when = parse_time(last.get("completedAt") or last.get("startedAt"))
            last_cell = status_cell(last["status"], palette, f" {clock.short(when)}")
        else:
            last_cell = plain("—")
        state = Text(" ", no_wrap=True, overflow="ellipsis")
        if job.running:
            oldest = min(job.running.values())
            count = f"{len(job.running)}× " if len(job.running) > 1 else ""
            state.append(f"▶ {count}{whole_seconds(clock.since(oldest))}", style=palette.accent)
            if job.queued:
                state.append(f" +{job.queued}q")
            if job.paused or model.is_own_paused(job.name):
                state.append(" ⏸")
        elif job.breaker in ("open", "half-open"):
            state.append(f"⊘ {job.breaker}", style=palette.error)
        elif model.is_own_paused(job.name):
            state.append("⏸ paused")
        elif job.paused:
            state.append("⏸ all")
        elif job.queued:
            state.append(f"+{job.queued} queued")
        return [plain(job.name), plain(job.trigger), next_text, last_cell, state]

    def rebuild(self, model: Model, clock: Clock, palette: Palette) -> None:
        """Lay out every row again: at start, when jobs come or go, on a new filter."""
        self._model = model
        table = self.table
        keep = table.key_at_cursor()
        table.clear()
        text = self.filter_text.lower()
        for job in model.jobs.values():
            if _matches(job, text):
                table.add_row(*self.cells(job, model, clock, palette), key=job.name)
        self._order(model)
        table.move_to_key(keep)
        self.redraws += 1
        self.rebuilds += 1
        self.border_subtitle = f"/ {self.filter_text}" if self.filter_text else ""

    def update_jobs(self, model: Model, names: set[str], clock: Clock, palette: Palette) -> None:
        """Rewrite the changed cells of the named jobs, in place."""
        self._model = model
        table = self.table
        changed_sort = False
        for name in names:
            job = model.jobs.get(name)
            if job is None or name not in table.rows:
                continue
            row = table.get_row(name)
            for column, new, old in zip(
                KEYS, self.cells(job, model, clock, palette), row, strict=True
            ):
                if new != old:
                    table.update_cell(name, column, new)
                    self.cells_updated += 1
                    changed_sort |= column == table.sort_column
        if changed_sort:
            self._order(model)
        self.redraws += 1

    def _order(self, model: Model) -> None:
        """Rows in config order, or by the sort column when one is chosen."""
        table = self.table
        column = table.sort_column
        names = [name for name in model.jobs if name in table.rows]
        if column is not None:
            names.sort(
                key=lambda name: _sort_key(model.jobs[name], model, column),
                reverse=table.sort_reverse,
            )
        if names != table.row_keys():
            rank = {name: index for index, name in enumerate(names)}
            keep = table.key_at_cursor()
            table.sort("job", key=lambda text: rank.get(text.plain.strip(), len(rank)))
            table.move_to_key(keep)

    @on(Table.SortChanged, "#jobs")
    def _sort_changed(self, event: Table.SortChanged) -> None:
        event.stop()
        if self._model is not None:
            self._order(self._model)

    @on(Input.Changed, "#jobs-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.filter_text = event.value.strip()
        self.post_message(FilterChanged(self))

    @on(Input.Submitted, "#jobs-filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        event.stop()
        self.table.focus()

    @on(DataTable.RowSelected, "#jobs")
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.Details(event.row_key.value))

    @on(DataTable.RowHighlighted, "#jobs")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self.post_message(self.Highlighted(event.row_key.value))
