"""The Log pane: the keeper's log, or the selected job's, as a tail read from the file and
then live lines; follow, wrap and `/` search.

The tail and the live lines overlap: lines come live while the tail is being read, and
lines already in the file may still be on their way. The keeper's lines carry their stamp
to the millisecond, so a live line the tail already holds is known exactly and left out;
the log then reads as the file does, each line once and in order.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.message import Message
from textual.widgets import Input

from watchkeeper.tui.text import Clock, compact_stamp, log_display
from watchkeeper.tui.widgets.filter_input import FilterInput
from watchkeeper.tui.widgets.log_view import LogView
from watchkeeper.tui.widgets.pane import Pane

LOG_LINES = 2000


class LogPane(Pane):
    number, pane_name = 4, "Log"

    class Wanted(Message):
        """Read the tail of this source's log (in a worker) and hand it to show_tail."""

        def __init__(self, request: int, source: str) -> None:
            super().__init__()
            self.request, self.source = request, source

    def __init__(self, clock: Clock, **kwargs: Any) -> None:
        super().__init__(id="log-pane", **kwargs)
        self.clock = clock
        self.view = LogView(max_lines=LOG_LINES, id="log")
        self.search_input = FilterInput(
            placeholder="search the log: enter finds, n/N next/previous", id="log-search"
        )
        self.source = "keeper"
        self.job_mode = False
        """Show the log of the job selected in the Jobs pane instead of the keeper's."""
        self._request = 0
        self._loading = False
        self._held: list[str] = []
        self._in_tail: Counter[str] = Counter()
        """Keeper lines of the tail that may still come live: left out when they do."""

    def compose(self) -> ComposeResult:
        yield self.view
        yield self.search_input

    def main(self) -> LogView:
        return self.view

    @property
    def follow(self) -> bool:
        return self.view.follow

    def on_mount(self) -> None:
        self.set_source("keeper")

    def _retitle(self) -> None:
        what = "keeper" if self.source == "keeper" else f"job {self.source}"
        self.border_title = f"{self.number} {self.pane_name} · {what}"
        parts = [f"follow {'on' if self.view.follow else 'off'}"]
        if not self.view.wrap:
            parts.append("no wrap")
        where = self.view.position()
        if where is not None:
            number, count = where
            found = f"{number}/{count}" if count else "not found"
            parts.insert(0, f"/{self.view.pattern} {found}")
        self.border_subtitle = " · ".join(parts)

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
        self._in_tail.clear()
        self.view.clear()
        self._retitle()
        self.post_message(self.Wanted(self._request, self.source))

    def show_tail(self, request: int, lines: list[str]) -> None:
        if request != self._request:
            return
        self._loading = False
        self.view.clear()
        if self.source == "keeper":
            self._in_tail = Counter(lines)
        self._write(lines)
        held, self._held = self._held, []
        self._take(held)
        self.redraws += 1

    def add(self, lines: list[tuple[str, str]]) -> None:
        """Live lines, (source, line) with the line as in the file."""
        mine = [line for source, line in lines if source == self.source]
        if not mine:
            return
        if self._loading:
            self._held.extend(mine)
            return
        self._take(mine)
        self.redraws += 1

    def _take(self, lines: list[str]) -> None:
        fresh = lines
        if self._in_tail:
            fresh = []
            for line in lines:
                if self._in_tail[line] > 0:
                    self._in_tail[line] -= 1
                    continue
                # The first line the tail did not hold: every later one is newer still.
                self._in_tail.clear()
                fresh.append(line)
        self._write(fresh)

    def _write(self, lines: list[str]) -> None:
        show = log_display if self.source == "keeper" else compact_stamp
        self.view.write_lines([show(line, self.clock) for line in lines])

    def toggle_follow(self) -> bool:
        self.view.set_follow(not self.view.follow)
        self._retitle()
        return self.view.follow

    def toggle_wrap(self) -> bool:
        self.view.set_wrap(not self.view.wrap)
        self._retitle()
        return self.view.wrap

    def open_search(self) -> None:
        self.search_input.open()

    @on(LogView.FollowChanged)
    @on(LogView.SearchMoved)
    def _view_changed(self, event: Message) -> None:
        event.stop()
        self._retitle()

    @on(Input.Submitted, "#log-search")
    def _search(self, event: Input.Submitted) -> None:
        event.stop()
        self.view.search(event.value.strip())
        self.view.focus()

    def on_filter_input_closed(self, event: Message) -> None:
        event.stop()
        event.prevent_default()
        self.view.search("")
        self.view.focus()
