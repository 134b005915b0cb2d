"""A log view: lines that may wrap, follow the end, and be searched.

Textual's Log scrolls to the end only when it already was there, so a pane whose height
changed (focus moved, the terminal was resized) silently stopped following. Here,
following is a state of its own: on, every write and every resize end at the last line;
it goes off only when the operator scrolls up or jumps to a match (FollowChanged says so).

Lines are kept as text and laid out for the view's width when drawn: wrapped lines
continue indented by two cells; search matches are shown reversed.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any, ClassVar

from rich.cells import cell_len, get_character_cell_size
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

INDENT = 2
CACHE_LIMIT = 1000


def cuts(line: str, first: int, rest: int) -> list[int]:
    """Where each row of `line` wrapped to `first` cells, then `rest`, starts (offsets):
    after the row's last space when there is one in its second half, else mid-word."""
    starts = [0]
    room, used, space = first, 0, -1
    for index, char in enumerate(line):
        size = get_character_cell_size(char)
        if used + size > room and used and char == " ":
            starts.append(index + 1)  # the row ends at a word's end; the space goes
            room, used, space = rest, 0, -1
            continue
        if used + size > room and used:
            row = starts[-1]
            cut = space + 1 if space >= 0 and space - row >= room // 2 else index
            starts.append(cut)
            room, space = rest, -1
            used = sum(get_character_cell_size(c) for c in line[cut:index])
        if char == " ":
            space = index
        used += size
    return starts


class LogView(ScrollView, can_focus=True):
    COMPONENT_CLASSES: ClassVar[set[str]] = {"logview--match", "logview--current"}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "line(-1)", "Up", show=False),
        Binding("down,j", "line(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("ctrl+u", "half_page(-1)", "Half a page up", show=False),
        Binding("ctrl+d", "half_page(1)", "Half a page down", show=False),
        Binding("home,g", "top", "First line", show=False),
        Binding("end,G", "bottom", "Last line", show=False),
        Binding("left", "sideways(-1)", "Left", show=False),
        Binding("right", "sideways(1)", "Right", show=False),
        Binding("n", "match(1)", "Next match", show=False),
        Binding("N", "match(-1)", "Previous match", show=False),
    ]

    class FollowChanged(Message):
        """Following went off (scrolled up, jumped to a match) or on (to the end)."""

        def __init__(self, view: LogView) -> None:
            super().__init__()
            self.view = view

    class SearchMoved(Message):
        """The current match, or the search, changed."""

        def __init__(self, view: LogView) -> None:
            super().__init__()
            self.view = view

    def __init__(
        self, max_lines: int = 2000, follow: bool = True, wrap: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.max_lines = max_lines
        self.follow = follow
        self.wrap = wrap
        self._lines: list[str] = []
        self._widths: list[int] = []
        self._dropped = 0
        """Lines pruned from the front so far: a line's number is this plus its index."""
        self._starts: list[int] = [0]
        """Wrapped: the first row of each line, and the total rows at the end."""
        self._laid_for = -1
        self._pattern = ""
        self._current: int | None = None
        """The line number of the current match."""
        self._cache: dict[tuple[int, int], Strip] = {}

    # ---- content ---------------------------------------------------------------------

    @property
    def lines(self) -> list[str]:
        return list(self._lines)

    @property
    def line_count(self) -> int:
        return len(self._lines)

    def clear(self) -> None:
        self._dropped += len(self._lines)
        self._lines.clear()
        self._widths.clear()
        self._current = None
        self._relayout()

    def write_lines(self, lines: list[str]) -> None:
        new = [part for line in lines for part in line.splitlines() or [""]]
        if not new:
            return
        self._lines.extend(new)
        self._widths.extend(cell_len(line) for line in new)
        excess = len(self._lines) - self.max_lines
        if excess > 0:
            del self._lines[:excess]
            del self._widths[:excess]
            self._dropped += excess
            self._cache.clear()
            self._relayout()
        elif self.wrap and self._laid_for == self._wrap_width():
            first = len(self._lines) - len(new)
            for index in range(first, len(self._lines)):
                self._starts.append(self._starts[-1] + self._rows_of(index))
            self._resize_virtual()
        else:
            self._relayout()
        # Held by the mouse, the scrollbar stays where the operator put it meanwhile.
        if self.follow and not self.is_vertical_scrollbar_grabbed:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        self.refresh()

    # ---- layout ----------------------------------------------------------------------

    def _wrap_width(self) -> int:
        return max(INDENT + 1, self.scrollable_content_region.width)

    def _rows_of(self, index: int) -> int:
        width = self._wrap_width()
        if self._widths[index] <= width:
            return 1
        return len(cuts(self._lines[index], width, width - INDENT))

    def _relayout(self) -> None:
        self._cache.clear()
        if self.wrap:
            starts = [0]
            if self.scrollable_content_region.width > 0:
                self._laid_for = self._wrap_width()
                for index in range(len(self._lines)):
                    starts.append(starts[-1] + self._rows_of(index))
            else:  # not laid out yet: a row a line until the first size arrives
                self._laid_for = -1
                starts = list(range(len(self._lines) + 1))
            self._starts = starts
        self._resize_virtual()
        self.refresh()

    def _resize_virtual(self) -> None:
        if self.wrap:
            self.virtual_size = Size(self._wrap_width(), self._starts[-1])
        else:
            self.virtual_size = Size(max(self._widths, default=0), len(self._lines))

    def _row_of(self, index: int) -> int:
        return self._starts[index] if self.wrap else index

    def on_resize(self, event: events.Resize) -> None:
        if self.wrap and self._laid_for != self._wrap_width():
            self._relayout()
        if self.follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
            # The new size may still be settling: end there too once it has.
            self.call_after_refresh(self._to_end_if_following)

    def _to_end_if_following(self) -> None:
        if self.follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._cache.clear()

    # ---- drawing ---------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        row = scroll_y + y
        width = self.scrollable_content_region.width
        style = self.rich_style
        if self.wrap:
            index = bisect_right(self._starts, row) - 1
            if not 0 <= index < len(self._lines):
                return Strip.blank(width, style)
            strip = self._chunk(index, row - self._starts[index])
            return strip.crop_extend(0, width, style)
        if row >= len(self._lines):
            return Strip.blank(width, style)
        return self._chunk(row, 0).crop_extend(scroll_x, scroll_x + width, style)

    def _chunk(self, index: int, part: int) -> Strip:
        number = self._dropped + index
        cached = self._cache.get((number, part))
        if cached is not None:
            return cached
        line = self._lines[index]
        text = Text(line, no_wrap=True)
        text.stylize(self.rich_style)
        self._highlight(text, number)
        # Rows as laid out (the width may have changed since; a relayout follows).
        width = self._laid_for
        if self.wrap and width > 0 and self._widths[index] > width:
            starts = cuts(line, width, width - INDENT)
            if part >= len(starts):
                return Strip([])
            end = starts[part + 1] if part + 1 < len(starts) else len(line)
            text = text[starts[part] : end]
            if part:
                text = Text(" " * INDENT, style=self.rich_style) + text
        strip = Strip(text.render(self.app.console), text.cell_len)
        if len(self._cache) > CACHE_LIMIT:
            self._cache.clear()
        self._cache[(number, part)] = strip
        return strip

    def _highlight(self, text: Text, number: int) -> None:
        if not self._pattern:
            return
        component = "logview--current" if number == self._current else "logview--match"
        style: Style = self.get_component_rich_style(component)
        lowered = text.plain.lower()
        start = lowered.find(self._pattern)
        while start >= 0:
            text.stylize(style, start, start + len(self._pattern))
            start = lowered.find(self._pattern, start + len(self._pattern))

    # ---- following and moving --------------------------------------------------------

    def set_follow(self, follow: bool) -> None:
        if follow != self.follow:
            self.follow = follow
            self.post_message(self.FollowChanged(self))
        if follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def set_wrap(self, wrap: bool) -> None:
        self.wrap = wrap
        self.scroll_x = 0
        self._relayout()
        if self.follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        elif self._current is not None:
            self._show_line(self._current - self._dropped)

    def _move(self, rows: int) -> None:
        if rows < 0:
            self.set_follow(False)
        self.scroll_to(y=self.scroll_y + rows, animate=False, immediate=True)

    def action_line(self, rows: int) -> None:
        self._move(rows)

    def action_page(self, direction: int) -> None:
        self._move(direction * max(1, self.scrollable_content_region.height - 1))

    def action_half_page(self, direction: int) -> None:
        self._move(direction * max(1, self.scrollable_content_region.height // 2))

    def action_top(self) -> None:
        self.set_follow(False)
        self.scroll_to(y=0, animate=False, immediate=True)

    def action_bottom(self) -> None:
        self.scroll_end(animate=False, immediate=True, x_axis=False)

    def action_sideways(self, direction: int) -> None:
        if not self.wrap:
            step = max(1, self.scrollable_content_region.width // 4)
            self.scroll_to(x=self.scroll_x + direction * step, animate=False, immediate=True)

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self.set_follow(False)

    # ---- search ----------------------------------------------------------------------

    @property
    def pattern(self) -> str:
        return self._pattern

    def search(self, text: str) -> int:
        """Highlight `text` (any case) and go to its newest match; how many lines hold it."""
        self._pattern = text.lower()
        self._current = None
        self._cache.clear()
        matches = self.matches()
        if matches:
            self._go(matches[-1])
        self.refresh()
        self.post_message(self.SearchMoved(self))
        return len(matches)

    def matches(self) -> list[int]:
        """Indices of the lines that hold the pattern, oldest first."""
        if not self._pattern:
            return []
        return [index for index, line in enumerate(self._lines) if self._pattern in line.lower()]

    def position(self) -> tuple[int, int] | None:
        """(1-based number of the current match, how many), or None without a search."""
        if not self._pattern:
            return None
        matches = self.matches()
        current = self._current - self._dropped if self._current is not None else None
        return (matches.index(current) + 1 if current in matches else 0), len(matches)

    def action_match(self, step: int) -> None:
        matches = self.matches()
        if not matches:
            return
        current = self._current - self._dropped if self._current is not None else None
        if current in matches:
            target = matches[(matches.index(current) + step) % len(matches)]
        else:
            target = matches[-1] if step < 0 else matches[0]
        self._go(target)
        self.post_message(self.SearchMoved(self))

    def _go(self, index: int) -> None:
        self.set_follow(False)
        self._current = self._dropped + index
        self._cache.clear()
        self._show_line(index)
        self.refresh()

    def _show_line(self, index: int) -> None:
        if not 0 <= index < len(self._lines):
            return
        row = self._row_of(index)
        height = self.scrollable_content_region.height
        if not self.scroll_y <= row < self.scroll_y + height:
            self.scroll_to(y=max(0, row - height // 2), animate=False, immediate=True)
        if not self.wrap:
            self.scroll_to(x=0, animate=False, immediate=True)
