"""The one-line input a pane opens for `/`: a filter in Jobs and History, a search in the
Log. Escape clears it; the pane then hands the keys back to its list."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Input


class FilterInput(Input):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Clear"),
    ]

    class Closed(Message):
        """Escape: the input is empty and hidden again."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(classes="filter", **kwargs)
        self.cursor_blink = False

    def open(self) -> None:
        self.add_class("-open")
        self.focus()

    def action_close(self) -> None:
        self.value = ""
        self.remove_class("-open")
        self.post_message(self.Closed())
