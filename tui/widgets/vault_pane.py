"""The Vault pane: the four folders with their counts, and as many of their newest items
as the pane has room for; enter previews an item (on a folder: its newest)."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import DataTable

from watchkeeper.core.vault import FOLDERS
from watchkeeper.tui import decisions
from watchkeeper.tui.model import Model
from watchkeeper.tui.widgets.cells import plain
from watchkeeper.tui.widgets.pane import Pane
from watchkeeper.tui.widgets.table import ColumnSpec, Table

COLUMNS = [ColumnSpec("item", "FOLDER / NEWEST", 12, flex=1), ColumnSpec("count", "#", 5)]


def items_shown(folders: dict[str, tuple[int, tuple[str, ...]]], room: int) -> dict[str, int]:
    """How many newest items of each folder fit in `room` rows after the folders' own:
    one each in turn, Inbox first, until the room or the items run out."""
    shown = dict.fromkeys(FOLDERS, 0)
    spare = room - len(FOLDERS)
    while spare > 0:
        grew = False
        for folder in FOLDERS:
            newest = folders.get(folder, (0, ()))[1]
            if spare > 0 and shown[folder] < len(newest):
                shown[folder] += 1
                spare -= 1
                grew = True
        if not grew:
            break
    return shown


class VaultPane(Pane):
    number, pane_name = 2, "Vault"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "approve", "Approve", tooltip="Approve the Needs_Action item: to Plans/"),
        Binding("d", "dismiss", "Dismiss", tooltip="Dismiss the Needs_Action item (asks why)"),
    ]

    class Details(Message):
        def __init__(self, relative: str) -> None:
            super().__init__()
            self.relative = relative

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(id="vault-pane", **kwargs)
        self.table = Table(COLUMNS, id="vault", show_header=False)
        self._model: Model | None = None
        self._room = 0

    def compose(self) -> ComposeResult:
        yield self.table

    def main(self) -> Table:
        return self.table

    def selected_file(self) -> str | None:
        """The vault file under the cursor: an item, or a folder's newest."""
        key = self.table.key_at_cursor()
        if not key:
            return None
        if not key.endswith("/"):
            return key
        newest = self._model.folders.get(key[:-1], (0, ()))[1] if self._model else ()
        return f"{key}{newest[0]}" if newest else None

    def draw(self, model: Model) -> None:
        self._model = model
        self._room = self.table.scrollable_content_region.height
        table = self.table
        keep = table.key_at_cursor()
        table.clear()
        shown = items_shown(model.folders, self._room)
        for folder in FOLDERS:
            count, newest = model.folders.get(folder, (0, ()))
            table.add_row(Text(f" ▾ {folder}", style="bold"), plain(count), key=f"{folder}/")
            for name in newest[: shown[folder]]:
                # unique_by held it: its title is an item's already (the # column).
                mark = "dup" if f"{folder}/{name}" in model.duplicates else ""
                table.add_row(plain(f"  {name}"), plain(mark), key=f"{folder}/{name}")
        table.move_to_key(keep)
        self.redraws += 1

    def action_approve(self) -> None:
        decisions.approve(self.app, self.table.key_at_cursor())  # type: ignore[arg-type]

    def action_dismiss(self) -> None:
        decisions.dismiss(self.app, self.table.key_at_cursor())  # type: ignore[arg-type]

    def on_resize(self, event: events.Resize) -> None:
        self.call_after_refresh(self._fit_items)

    def _fit_items(self) -> None:
        if self._model is not None and self.table.scrollable_content_region.height != self._room:
            self.draw(self._model)

    @on(DataTable.RowSelected, "#vault")
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        relative = self.selected_file()
        if relative is not None:
            self.post_message(self.Details(relative))
