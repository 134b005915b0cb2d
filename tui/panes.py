"""The console's panes. The app hands them data (attributes and methods flow down); they
post messages when they need something read or opened (messages flow up). None of them
reads a file or calls the keeper itself.

Tables are keyed (job name, run id, folder/file, quota scope) and updated cell by cell,
so a change to one job among a thousand redraws one row.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Input, Log, Sparkline, Static
from textual.widgets.data_table import ColumnKey, RowDoesNotExist, RowKey

from core.history import STATUSES, status_label
from core.units import format_duration
from core.vault import FOLDERS
from tui.model import JobRow, Model
from tui.text import (
    STATE_GLYPHS,
    Clock,
    duration_text,
    home_short,
    parse_time,
    status_class,
)

HISTORY_MARGIN = 20
"""Rows read beyond what the History pane shows, so a little scrolling needs no read."""
DEFAULT_VISIBLE = 20
LOG_LINES = 2000


@dataclass(frozen=True)
class Palette:
    """Theme colours for cell text (DataTable cells are Rich text, not CSS)."""

    success: str
    error: str
    warning: str
    accent: str

    def of(self, status: str) -> str:
        return getattr(self, status_class(status))


def whole_seconds(seconds: float) -> str:
    """Ticking texts in whole seconds: 0s, 7s, 4m05s (never 850ms, never 4.1s)."""
    return format_duration(float(int(seconds))) if seconds >= 1 else "0s"


def plain(value: object) -> Text:
    """Cells are Text, never str: DataTable parses str as markup, and job and file names
    are data."""
    return Text(str(value), no_wrap=True, overflow="ellipsis")


def status_cell(status: str, palette: Palette, suffix: str = "") -> Text:
    text = Text(status_label(status), style=palette.of(status), no_wrap=True)
    if suffix:
        text.append(suffix)
    return text


class Table(DataTable):
    """A row-cursor table whose enter opens details, shown as such in the footer."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Details", show=False),
        # With a row cursor, home and end mean the first and the last row.
        Binding("home", "scroll_top", "First row", show=False),
        Binding("end", "scroll_bottom", "Last row", show=False),
    ]
    # Under NO_COLOR the cursor's background is gone and bold alone reads like the
    # header: the row under the cursor of the focused table is shown reversed instead.
    # (The colours only matter where NO_COLOR means greys, Textual's default: reversed,
    # they make the same light bar.)
    DEFAULT_CSS = """
    Table:nocolor:focus > .datatable--cursor {
        color: $foreground;
        background: $background;
        text-style: reverse bold;
    }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)

    def update_cell(
        self,
        row_key: RowKey | str,
        column_key: ColumnKey | str,
        value: Any,
        *,
        update_width: bool = False,
    ) -> None:
        super().update_cell(row_key, column_key, value, update_width=update_width)
        # DataTable keys every rendered cell, row and line by an update count that
        # update_cell has just bumped, so none of them can be hit again, yet it keeps
        # them until its LRU bounds (10,000 cells, 1,000 rows and lines a table) push
        # them out: a table updated ten times a second grew the console by ~20 MB over
        # ten minutes. Dropping them now frees them and costs no cache hit.
        self._clear_caches()

    def key_at_cursor(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except (RowDoesNotExist, LookupError):
            return None

    def move_to_key(self, key: str | None) -> None:
        if key is None:
            return
        with contextlib.suppress(RowDoesNotExist):
            self.move_cursor(row=self.get_row_index(key), animate=False)


class QuietLog(Log):
    """Textual's Log measures new lines in a thread worker that reaches for the app when
    done; if the app quits in between (a log line written just before the exit), that
    worker fails and the exit ends in a traceback. Here the measurement is simply
    dropped then: nobody will see the width."""

    @work(thread=True, exit_on_error=False)
    def _update_size(self, updates: int, lines: list[str]) -> None:
        if not lines:
            return
        width = max(cell_len(self._process_line(line)) for line in lines)
        with contextlib.suppress(RuntimeError):  # NoActiveAppError, or the app is gone
            self.app.call_from_thread(self._update_maximum_width, updates, width)


class FilterInput(Input):
    """The `/` filter of a pane; escape clears it and goes back to the table."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Clear filter"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(classes="filter", **kwargs)
        self.cursor_blink = False

    def action_close(self) -> None:
        self.value = ""
        self.remove_class("-open")
        pane = self.parent
        if isinstance(pane, Pane):
            pane.main().focus()


class Pane(Vertical):
    """A bordered pane with its number and name in the border title."""

    number: ClassVar[int] = 0
    pane_name: ClassVar[str] = ""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(classes="pane", **kwargs)
        self.redraws = 0
        """How often the app redrew this pane: the coalescing is measured by it."""
        self.border_title = f"{self.number} {self.pane_name}"

    def main(self) -> DataTable | Log:
        raise NotImplementedError


# ---- header -------------------------------------------------------------------------


class HeaderBar(Static):
    """One line: vault, keeper state, uptime, today's results."""

    shown: Text | None = None

    def show(self, model: Model, clock: Clock) -> None:
        state = model.state
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(" watchkeeper ", style="bold reverse")
        word = state
        if model.attached_pid is not None and state in ("RUNNING", "PAUSED", "STOPPING"):
            word = f"ATTACHED pid {model.attached_pid}"
            if state != "RUNNING":
                word += f" {state}"
        text.append(f" {STATE_GLYPHS.get(state, '…')} {word} ", style="bold")
        if model.started_at is not None and state not in ("STOPPED", "STARTING"):
            text.append(f" up {whole_seconds(clock.since(model.started_at))} ")
        text.append(f" today ✔ {model.today['ok']} ok · ✘ {model.today['failed']} failed ")
        if model.config_issues:
            text.append(" ⚠ config reload refused ", style="bold")
        text.append(f" {home_short(model.vault)}", style="dim")
        if text != self.shown:
            self.shown = text
            self.update(text)


# ---- jobs ---------------------------------------------------------------------------


def _matches(job: JobRow, text: str) -> bool:
    return not text or text in job.name.lower() or text in job.trigger.lower()


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
        self.table = table = Table(id="jobs")
        # Fixed widths: cells change in place, and a column must not jump as they do.
        table.add_column("JOB", key="job", width=16)
        table.add_column("NEXT", key="next", width=11)
        table.add_column("LAST", key="last", width=20)
        table.add_column("PAUSED", key="paused", width=8)
        table.add_column("RUNNING", key="running", width=9)
        table.add_column("TRIGGER", key="trigger")

    def compose(self) -> ComposeResult:
        yield self.filter_input
        yield self.table

    def main(self) -> Table:
        return self.table

    @property
    def selected(self) -> str | None:
        return self.main().key_at_cursor()

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
        if model.is_own_paused(job.name):
            paused = plain("⏸ paused")
        elif job.paused:
            paused = plain("⏸ all")
        else:
            paused = plain("")
        running = Text(no_wrap=True)
        if job.running:
            oldest = min(job.running.values())
            count = f"{len(job.running)}× " if len(job.running) > 1 else ""
            running.append(f"▶ {count}{whole_seconds(clock.since(oldest))}", style=palette.accent)
        if job.queued:
            running.append(f" +{job.queued}q")
        return [plain(job.name), next_text, last_cell, paused, running, plain(job.trigger)]

    def rebuild(self, model: Model, clock: Clock, palette: Palette) -> None:
        """Lay out every row again: at start, when jobs come or go, on a new filter."""
        table = self.main()
        keep = table.key_at_cursor()
        table.clear()
        text = self.filter_text.lower()
        for job in model.jobs.values():
            if _matches(job, text):
                table.add_row(*self.cells(job, model, clock, palette), key=job.name)
        table.move_to_key(keep)
        self.redraws += 1
        self.rebuilds += 1
        self.border_subtitle = f"/ {self.filter_text}" if self.filter_text else ""

    def update_jobs(self, model: Model, names: set[str], clock: Clock, palette: Palette) -> None:
        """Rewrite the changed cells of the named jobs, in place."""
        table = self.main()
        columns = ("job", "next", "last", "paused", "running", "trigger")
        for name in names:
            job = model.jobs.get(name)
            if job is None or name not in table.rows:
                continue
            row = table.get_row(name)
            for column, new, old in zip(
                columns, self.cells(job, model, clock, palette), row, strict=True
            ):
                if new != old:
                    table.update_cell(name, column, new)
                    self.cells_updated += 1
        self.redraws += 1

    @on(Input.Changed, "#jobs-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self.post_message(FilterChanged(self))

    @on(Input.Submitted, "#jobs-filter")
    def _filter_done(self) -> None:
        self.main().focus()

    @on(DataTable.RowSelected, "#jobs")
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.Details(event.row_key.value))

    @on(DataTable.RowHighlighted, "#jobs")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self.post_message(self.Highlighted(event.row_key.value))


class FilterChanged(Message):
    def __init__(self, pane: Pane) -> None:
        super().__init__()
        self.pane = pane


# ---- history ------------------------------------------------------------------------


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
            placeholder="filter history: a job or a status (failure, running …)",
            id="history-filter",
        )
        self.table = table = HistoryTable(id="history")
        table.add_column("TIME", key="time")
        table.add_column("JOB", key="job")
        table.add_column("STATUS", key="status")
        table.add_column("DURATION", key="duration")
        table.add_column("TRIGGER", key="trigger")
        self.filter = HistoryFilter()
        self.filter_text = ""
        self.limit = 0
        self.records: list[dict[str, Any]] = []
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
        key = self.main().key_at_cursor()
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

    def draw(self, clock: Clock, palette: Palette) -> None:
        table = self.main()
        if self._layout_needed:
            keep = table.key_at_cursor() if table.cursor_row > 0 else None
            table.clear()
            for record in self.records:
                table.add_row(*self.cells(record, clock, palette), key=record["id"])
            table.move_to_key(keep)
            self._layout_needed = False
        else:
            columns = ("time", "job", "status", "duration", "trigger")
            for run_id in self._changed:
                record = self.by_id.get(run_id)
                if record is None or run_id not in table.rows:
                    continue
                for column, value in zip(columns, self.cells(record, clock, palette), strict=True):
                    table.update_cell(run_id, column, value)
        self._changed.clear()
        subtitle = f"/ {self.filter_text}" if self.filter_text else ""
        if self.filter.problem:
            subtitle = f"/ {self.filter.problem}"
        self.border_subtitle = subtitle
        self.redraws += 1

    def cells(self, record: dict[str, Any], clock: Clock, palette: Palette) -> list[Text]:
        trigger = record.get("trigger") or "manual"
        attempt = record.get("attempt") or 1
        return [
            plain(clock.short(parse_time(record.get("startedAt")))),
            plain(record.get("taskId", "?")),
            status_cell(record.get("status", "?"), palette),
            plain(duration_text(record.get("duration"))),
            plain(trigger + (f" #{attempt}" if attempt > 1 else "")),
        ]

    def set_filter(self, text: str, jobs: list[str]) -> None:
        self.filter_text = text.strip()
        self.filter = parse_history_filter(text, jobs)
        self.request()

    @on(Input.Changed, "#history-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.post_message(FilterChanged(self))

    @on(Input.Submitted, "#history-filter")
    def _filter_done(self) -> None:
        self.main().focus()

    @on(DataTable.RowSelected, "#history")
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        record = self.by_id.get(event.row_key.value or "")
        if record is not None:
            self.post_message(self.Details(dict(record)))

    @on(DataTable.RowHighlighted, "#history")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        if event.cursor_row >= self.main().row_count - HISTORY_MARGIN // 2:
            self._more()

    @on(HistoryTable.NearEnd)
    def _near_end(self, event: HistoryTable.NearEnd) -> None:
        event.stop()
        self._more()

    def _more(self) -> None:
        """Read one more page: the pane never holds more than it was scrolled through."""
        if self.more and not self._pending:
            self.request(self.limit + self.page())

    def on_resize(self) -> None:
        # The first page waits for the first size, so it is what the pane shows plus a
        # margin. Posted from here, not by the screen: a message whose sender is the
        # screen stops bubbling there and would never reach the app.
        if not self.limit or (self.page() > self.limit and not self._pending):
            self.request()


# ---- vault --------------------------------------------------------------------------


class VaultPane(Pane):
    number, pane_name = 2, "Vault"

    class Details(Message):
        def __init__(self, relative: str) -> None:
            super().__init__()
            self.relative = relative

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(id="vault-pane", **kwargs)
        self.table = Table(id="vault")
        self.table.add_column("FOLDER / NEWEST", key="item")
        self.table.add_column("COUNT", key="count", width=6)

    def compose(self) -> ComposeResult:
        yield self.table

    def main(self) -> Table:
        return self.table

    def draw(self, model: Model) -> None:
        table = self.main()
        keep = table.key_at_cursor()
        table.clear()
        for folder in FOLDERS:
            count, newest = model.folders.get(folder, (0, ()))
            table.add_row(Text(f"▾ {folder}", style="bold"), plain(count), key=f"{folder}/")
            for name in newest:
                table.add_row(plain(f"  {name}"), plain(""), key=f"{folder}/{name}")
        table.move_to_key(keep)
        self.redraws += 1

    @on(DataTable.RowSelected, "#vault")
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        key = event.row_key.value or ""
        if not key.endswith("/"):
            self.post_message(self.Details(key))


# ---- log ----------------------------------------------------------------------------


class LogPane(Pane):
    number, pane_name = 4, "Log"

    class Wanted(Message):
        """Read the tail of this source's log (in a worker) and hand it to show_tail."""

        def __init__(self, request: int, source: str) -> None:
            super().__init__()
            self.request, self.source = request, source

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(id="log-pane", **kwargs)
        self.view = QuietLog(id="log", max_lines=LOG_LINES, auto_scroll=True)
        self.source = "keeper"
        self.job_mode = False
        """Show the log of the job selected in the Jobs pane instead of the keeper's."""
        self.follow = True
        self._request = 0
        self._loading = False
        self._held: list[str] = []

    def compose(self) -> ComposeResult:
        yield self.view

    def main(self) -> Log:
        return self.view

    def on_mount(self) -> None:
        self.set_source("keeper")

    def _retitle(self) -> None:
        what = "keeper" if self.source == "keeper" else f"job {self.source}"
        self.border_title = f"{self.number} {self.pane_name} · {what}"
        self.border_subtitle = "follow on" if self.follow else "follow off"

    def set_source(self, source: str) -> None:
        """Switch to another log: its tail is read first, live lines follow."""
        if source != self.source or not self._request:
            self.source = source
            self.reload()

    def reload(self) -> None:
        """Read the tail again (after a resync, lines may have been dropped)."""
        self._request += 1
        self._loading = True
        self._held = []
        self.main().clear()
        self._retitle()
        self.post_message(self.Wanted(self._request, self.source))

    def show_tail(self, request: int, lines: list[str]) -> None:
        if request != self._request:
            return
        self._loading = False
        log = self.main()
        log.clear()
        log.write_lines(lines, scroll_end=self.follow)
        if self._held:
            log.write_lines(self._held, scroll_end=self.follow)
            self._held = []
        self.redraws += 1

    def add(self, lines: list[tuple[str, str]]) -> None:
        mine = [line for source, line in lines if source == self.source]
        if not mine:
            return
        if self._loading:
            # The tail being read may or may not hold these yet; a line or two shown
            # twice is better than lines missing, so they are written after it.
            self._held.extend(mine)
            return
        self.main().write_lines(mine, scroll_end=self.follow)
        self.redraws += 1

    def toggle_follow(self) -> bool:
        self.follow = not self.follow
        log = self.main()
        log.auto_scroll = self.follow
        if self.follow:
            log.scroll_end(animate=False)
        self._retitle()
        return self.follow


# ---- quota --------------------------------------------------------------------------


class QuotaPane(Pane):
    number, pane_name = 5, "Quota"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(id="quota-pane", **kwargs)
        self.table = Table(id="quota")
        self.table.add_column("SCOPE", key="scope", width=9)
        self.table.add_column("USED", key="used", width=6)
        self.table.add_column("FREES", key="frees", width=6)
        self.summary = Static(id="quota-summary")
        self.spark = Sparkline([0] * 60, id="quota-spark")
        self._summary = ""

    def compose(self) -> ComposeResult:
        yield self.table
        yield self.summary
        yield self.spark

    def main(self) -> Table:
        return self.table

    def draw(self, model: Model, clock: Clock) -> None:
        table = self.main()
        rows = {usage["scope"]: usage for usage in model.quota}
        if list(rows) != [key.value for key in table.rows]:
            keep = table.key_at_cursor()
            table.clear()
            for scope, usage in rows.items():
                table.add_row(*self.cells(usage, clock), key=scope)
            table.move_to_key(keep)
        else:
            for scope, usage in rows.items():
                for column, value in zip(
                    ("scope", "used", "frees"), self.cells(usage, clock), strict=True
                ):
                    if table.get_cell(scope, column) != value:
                        table.update_cell(scope, column, value)
        now = clock.now().timestamp()
        per_minute = model.runs_per_minute(now)
        summary = f"{model.runs_last_hour} runs/h · peak {max(per_minute)}/min"
        if summary != self._summary:
            self._summary = summary
            self.summary.update(Text(summary, no_wrap=True))
        self.spark.data = per_minute
        self.redraws += 1

    @staticmethod
    def cells(usage: dict[str, Any], clock: Clock) -> list[Text]:
        limit = usage.get("limit") or 0
        used = usage.get("used") or 0
        frees = "—"
        if limit:
            if used >= limit:
                frees = whole_seconds(clock.until(parse_time(usage.get("next_free"))))
            else:
                frees = "now"
        return [
            plain(usage["scope"]),
            plain(f"{used}/{limit or '∞'}"),
            plain(frees),
        ]


def palette_from(theme: Any) -> Palette:
    return Palette(
        success=theme.success or "green",
        error=theme.error or "red",
        warning=theme.warning or "yellow",
        accent=theme.accent or theme.primary,
    )
