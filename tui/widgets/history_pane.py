"""The History pane: the newest runs first, one page read at a time (never more than it was
scrolled through), live runs folded in as they start and end."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.message import Message
from textual.widgets import DataTable, Input

from watchkeeper.core.history import STATUSES
from watchkeeper.tui.text import Clock, duration_text, parse_time, run_time
from watchkeeper.tui.widgets.cells import Palette, plain, status_cell
from watchkeeper.tui.widgets.filter_input import FilterInput
from watchkeeper.tui.widgets.pane import FilterChanged, Pane
from watchkeeper.tui.widgets.table import ColumnSpec, Table

HISTORY_MARGIN = 20
"""Rows read beyond what the History pane shows, so a little scrolling needs no read."""
DEFAULT_VISIBLE = 20
# At 80 columns (56 for this pane): 9 + 13 + 11 + 6 + 9 characters, each with its gap.
COLUMNS = [
    ColumnSpec("time", "TIME", 10),
    ColumnSpec("job", "JOB", 14, flex=2),
    ColumnSpec("status", "STATUS", 12),
    ColumnSpec("duration", "TOOK", 7),
    ColumnSpec("trigger", "TRIGGER", 10, flex=1),
]
KEYS = tuple(spec.key for spec in COLUMNS)
TRIGGER_WORDS = {"schedule": "schedule", "catch_up": "catch-up"}


@dataclass(frozen=True)
class HistoryFilter:
    job: str | None = None
    status: str | None = None
    problem: str | None = None


def parse_history_filter(text: str, jobs: list[str]) -> HistoryFilter:
    """A status word (failure, running ...) or a job: its exact name, or a part of it
    that only one job's name holds."""
    text = text.strip()
    if not text:
        return HistoryFilter()
    if text.lower() in STATUSES:
        return HistoryFilter(status=text.lower())
    if text in jobs:
        return HistoryFilter(job=text)
    candidates = [job for job in jobs if text.lower() in job.lower()]
    if len(candidates) == 1:
        return HistoryFilter(job=candidates[0])
    if not candidates:
        return HistoryFilter(problem=f"no job or status matches {text!r}")
    return HistoryFilter(problem=f"{len(candidates)} jobs match {text!r}: type more")


def _started_key(record: dict[str, Any]) -> tuple[str, str]:
    return (record.get("startedAt") or "", record.get("id") or "")


def trigger_text(record: dict[str, Any]) -> str:
    trigger = record.get("trigger") or "manual"
    attempt = record.get("attempt") or 1
    return TRIGGER_WORDS.get(trigger, trigger) + (f" #{attempt}" if attempt > 1 else "")


def _sort_key(record: dict[str, Any], column: str) -> Any:
    if column == "job":
        return (record.get("taskId") or "", _started_key(record))
    if column == "status":
        return (record.get("status") or "", _started_key(record))
    if column == "duration":
        return (record.get("duration") or -1, _started_key(record))
    if column == "trigger":
        return (trigger_text(record), _started_key(record))
    return _started_key(record)


class HistoryTable(Table):
    class NearEnd(Message):
        """Scrolled (by wheel or keys) close to the last row that is loaded."""

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if new_value > old_value and new_value >= self.max_scroll_y - HISTORY_MARGIN // 2:
            self.post_message(self.NearEnd())


class HistoryPane(Pane):
    number, pane_name = 3, "History"

    class Wanted(Message):
        """Read this page of history (in a worker) and hand it to show_page."""

        def __init__(self, request: int, job: str | None, status: str | None, limit: int) -> None:
            super().__init__()
            self.request, self.job, self.status, self.limit = request, job, status, limit

    class Details(Message):
        def __init__(self, record: dict[str, Any]) -> None:
            super().__init__()
            self.record = record

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(id="history-pane", **kwargs)
        self.filter_input = FilterInput(
            placeholder="filter: a job or a status (failure, running …)", id="history-filter"
        )
        self.table = HistoryTable(COLUMNS, sortable=KEYS, sort=("time", True), id="history")
        self.filter = HistoryFilter()
        self.filter_text = ""
        self.limit = 0
        self.records: list[dict[str, Any]] = []
        """Newest first: what paging and live updates work on, whatever the sort shows."""
        self.by_id: dict[str, dict[str, Any]] = {}
        self.more = True
        """The last page came back full: older runs may exist."""
        self.reads = 0
        self._request = 0
        self._pending = False
        self._recent: dict[str, dict[str, Any]] = {}
        """Live updates kept to merge into a page that was being read meanwhile."""
        self._changed: set[str] = set()
        self._layout_needed = False
        self._drawn_with: tuple[Clock, Palette] | None = None

    def compose(self) -> ComposeResult:
        yield self.filter_input
        yield self.table

    def main(self) -> Table:
        return self.table

    def page(self) -> int:
        """Rows shown (the pane less the table's header and an open filter) + margin."""
        height = self.size.height - 1 - int(self.filter_input.has_class("-open"))
        visible = height if height > 0 else DEFAULT_VISIBLE
        return visible + HISTORY_MARGIN

    def selected(self) -> dict[str, Any] | None:
        key = self.table.key_at_cursor()
        return self.by_id.get(key) if key else None

    def request(self, limit: int | None = None) -> None:
        """Ask for the newest `limit` runs (default: one page) matching the filter."""
        self.limit = limit or self.page()
        self._request += 1
        self._pending = True
        if self.filter.problem:
            self.show_page(self._request, [], full=False)
            return
        self.post_message(
            self.Wanted(self._request, self.filter.job, self.filter.status, self.limit)
        )

    def show_page(self, request: int, records: list[dict[str, Any]], full: bool) -> None:
        if request != self._request:
            return  # an older request: its filter or size is no longer wanted
        self._pending = False
        self.reads += 1
        self.more = full
        self.records = sorted(records, key=_started_key, reverse=True)
        self.by_id = {record["id"]: record for record in self.records}
        self._layout_needed = True
        self.apply(list(self._recent.values()))

    def _wants(self, record: dict[str, Any]) -> bool:
        if self.filter.problem:
            return False
        if self.filter.job is not None and record.get("taskId") != self.filter.job:
            return False
        return self.filter.status is None or record.get("status") == self.filter.status

    def apply(self, updates: list[dict[str, Any]]) -> None:
        """Fold live run records in: new runs go to the top, known ones change in place."""
        for record in updates:
            self._recent[record["id"]] = record
        while len(self._recent) > 200:
            self._recent.pop(next(iter(self._recent)))
        oldest = _started_key(self.records[-1]) if self.records and self.more else None
        for record in updates:
            known = self.by_id.get(record["id"])
            if known is not None:
                if self._wants(record):
                    known.update(record)
                    self._changed.add(record["id"])
                else:
                    self.records.remove(known)
                    del self.by_id[record["id"]]
                    self._layout_needed = True
            elif self._wants(record) and (oldest is None or _started_key(record) > oldest):
                self.records.append(dict(record))
                self.by_id[record["id"]] = self.records[-1]
                self._layout_needed = True
        if self._layout_needed:
            self.records.sort(key=_started_key, reverse=True)
            for record in self.records[self.limit :]:
                del self.by_id[record["id"]]
                self.more = True  # what falls off the end can be read again
            del self.records[self.limit :]

    def relayout(self) -> None:
        """Lay the rows out again at the next draw (a new theme recolours them)."""
        self._layout_needed = True

    def _shown_order(self) -> list[dict[str, Any]]:
        table = self.table
        if (table.sort_column, table.sort_reverse) == table.default_sort:
            return self.records
        column = table.sort_column or "time"
        return sorted(
            self.records, key=lambda record: _sort_key(record, column), reverse=table.sort_reverse
        )

    def draw(self, clock: Clock, palette: Palette) -> None:
        self._drawn_with = (clock, palette)
        table = self.table
        sorted_by_change = table.sort_column not in (None, "time") and any(
            run_id in self.by_id for run_id in self._changed
        )
        if self._layout_needed or sorted_by_change:
            keep = table.key_at_cursor() if table.cursor_row > 0 else None
            table.clear()
            for record in self._shown_order():
                table.add_row(*self.cells(record, clock, palette), key=record["id"])
            table.move_to_key(keep)
            self._layout_needed = False
        else:
            for run_id in self._changed:
                changed = self.by_id.get(run_id)
                if changed is None or run_id not in table.rows:
                    continue
                for column, value in zip(KEYS, self.cells(changed, clock, palette), strict=True):
                    table.update_cell(run_id, column, value)
        self._changed.clear()
        subtitle = f"/ {self.filter_text}" if self.filter_text else ""
        if self.filter.problem:
            subtitle = f"/ {self.filter.problem}"
        self.border_subtitle = subtitle
        self.redraws += 1

    @staticmethod
    def cells(record: dict[str, Any], clock: Clock, palette: Palette) -> list[Text]:
        return [
            plain(run_time(parse_time(record.get("startedAt")), clock)),
            plain(record.get("taskId", "?")),
            status_cell(record.get("status", "?"), palette),
            plain(duration_text(record.get("duration"))),
            plain(trigger_text(record)),
        ]

    def set_filter(self, text: str, jobs: list[str]) -> None:
        self.filter_text = text.strip()
        self.filter = parse_history_filter(text, jobs)
        self.request()

    @on(Table.SortChanged, "#history")
    def _sort_changed(self, event: Table.SortChanged) -> None:
        event.stop()
        self._layout_needed = True
        if self._drawn_with is not None:
            self.draw(*self._drawn_with)

    @on(Input.Changed, "#history-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.post_message(FilterChanged(self))

    @on(Input.Submitted, "#history-filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        event.stop()
        self.table.focus()

    @on(DataTable.RowSelected, "#history")
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        record = self.by_id.get(event.row_key.value or "")
        if record is not None:
            self.post_message(self.Details(dict(record)))

    @on(DataTable.RowHighlighted, "#history")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        if event.cursor_row >= self.table.row_count - HISTORY_MARGIN // 2:
            self._more()

    @on(HistoryTable.NearEnd)
    def _near_end(self, event: HistoryTable.NearEnd) -> None:
        event.stop()
        self._more()

    def _more(self) -> None:
        """Read one more page: the pane never holds more than it was scrolled through."""
        if self.more and not self._pending:
            self.request(self.limit + self.page())

    def on_resize(self, event: events.Resize) -> None:
        # The first page waits for the first size, so it is what the pane shows plus a
        # margin. Posted from here, not by the screen: a message whose sender is the
        # screen stops bubbling there and would never reach the app.
        if not self.limit or (self.page() > self.limit and not self._pending):
            self.request()
