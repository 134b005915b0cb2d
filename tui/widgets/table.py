"""The panes' table: a row cursor, the keys people know from less and vim, columns that
share out the pane's width, and an optional sort by column."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowDoesNotExist, RowKey

UP, DOWN = "▲", "▼"


@dataclass(frozen=True)
class ColumnSpec:
    """A column: its width in cells (the gap before it included). Flexible columns
    (flex > 0) share what the others leave in proportion to their flex, never getting
    less than their width."""

    key: str
    label: str
    width: int
    flex: int = 0


class Table(DataTable):
    """A row-cursor table whose columns fit its width. Sortable tables name their
    sortable columns; `s` steps the sort through them, `S` turns it around, and the
    pane that owns the table orders the rows when told by SortChanged."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Details", show=False),
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g,home", "scroll_top", "First row", show=False),
        Binding("G,end", "scroll_bottom", "Last row", show=False),
        Binding("ctrl+d", "half_page(1)", "Half a page down", show=False),
        Binding("ctrl+u", "half_page(-1)", "Half a page up", show=False),
        Binding("s", "sort_next", "Sort", show=False),
        Binding("S", "sort_reverse", "Reverse sort", show=False),
    ]

    class SortChanged(Message):
        """The sort column or direction changed: the owner lays the rows out again."""

        def __init__(self, table: Table) -> None:
            super().__init__()
            self.table = table

        @property
        def control(self) -> Table:
            return self.table

    def __init__(
        self,
        columns: list[ColumnSpec],
        sortable: tuple[str, ...] = (),
        sort: tuple[str | None, bool] = (None, False),
        **kwargs: Any,
    ) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, cell_padding=0, **kwargs)
        self.specs = columns
        self.sortable = sortable
        self.default_sort = sort
        self.sort_column, self.sort_reverse = sort
        for spec in columns:
            self.add_column(Text(f" {spec.label}"), key=spec.key, width=spec.width)
        self._label_sort()

    # ---- width ---------------------------------------------------------------------

    def on_resize(self, event: events.Resize) -> None:
        self.fit()

    def fit(self) -> None:
        """Give the flexible columns what the fixed ones leave of the width."""
        room = self.scrollable_content_region.width
        flexible = [spec for spec in self.specs if spec.flex]
        if room <= 0 or not flexible:
            return
        extra = max(0, room - sum(spec.width for spec in self.specs))
        weights = sum(spec.flex for spec in flexible)
        changed = False
        given = 0
        for index, spec in enumerate(flexible):
            # The last flexible column takes what rounding left over.
            share = extra - given if index == len(flexible) - 1 else extra * spec.flex // weights
            given += share
            column = self.columns[ColumnKey(spec.key)]
            if column.width != spec.width + share:
                column.width = spec.width + share
                changed = True
        if changed:
            # DataTable has no public way to change a column's width: it sizes itself
            # from the columns when rows come and go, so the scrollable width is set here
            # and its renders dropped (_clear_caches is private: textual is pinned, and
            # tests/test_console_pieces.py checks it is still there).
            widths = sum(column.get_render_width(self) for column in self.columns.values())
            self.virtual_size = Size(widths, self.virtual_size.height)
            self._clear_caches()
            self.refresh()

    # ---- cells ---------------------------------------------------------------------

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
        # ten minutes. Dropping them now frees them and costs no cache hit (a private
        # name; see fit()).
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

    def row_keys(self) -> list[str]:
        """The rows' keys in the order shown."""
        return [row.key.value or "" for row in self.ordered_rows]

    # ---- keys ----------------------------------------------------------------------

    def action_half_page(self, direction: int) -> None:
        header = self.header_height if self.show_header else 0
        rows = self.scrollable_content_region.height - header
        self.move_cursor(row=self.cursor_row + direction * max(1, rows // 2), animate=False)

    def action_sort_next(self) -> None:
        if not self.sortable:
            return
        column = self.sort_column
        index = self.sortable.index(column) + 1 if column in self.sortable else 0
        if index == len(self.sortable):
            self.sort_column, self.sort_reverse = self.default_sort
        else:
            self.sort_column, self.sort_reverse = self.sortable[index], False
        self._sorted()

    def action_sort_reverse(self) -> None:
        if not self.sortable:
            return
        if self.sort_column is None:
            self.sort_column = self.sortable[0]
        self.sort_reverse = not self.sort_reverse
        self._sorted()

    def _sorted(self) -> None:
        self._label_sort()
        self.post_message(self.SortChanged(self))

    def _label_sort(self) -> None:
        for spec in self.specs:
            label = f" {spec.label}"
            if spec.key == self.sort_column:
                label += DOWN if self.sort_reverse else UP
            self.columns[ColumnKey(spec.key)].label = Text(label)
        self._clear_caches()
        self.refresh()
