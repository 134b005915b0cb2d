"""A bordered pane with its number and name in the border title; `z` zooms it."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.containers import Vertical
from textual.message import Message
from textual.widget import Widget


class Pane(Vertical):
    number: ClassVar[int] = 0
    pane_name: ClassVar[str] = ""
    ALLOW_MAXIMIZE = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(classes="pane", **kwargs)
        self.redraws = 0
        """How often the app redrew this pane: the coalescing is measured by it."""
        self.border_title = f"{self.number} {self.pane_name}"

    def main(self) -> Widget:
        """The part that takes the keys: a table, or the log."""
        raise NotImplementedError

    def on_filter_input_closed(self, event: Message) -> None:
        event.stop()
        self.main().focus()


class FilterChanged(Message):
    """The text of a pane's `/` filter changed."""

    def __init__(self, pane: Pane) -> None:
        super().__init__()
        self.pane = pane
