"""The dismiss form: why an item in Needs_Action/ is dismissed. Its answer is the reason,
or None when the operator thinks better of it (escape, Cancel)."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from watchkeeper.core.triage import MAX_REASON


class DismissScreen(ModalScreen[str | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, relative: str) -> None:
        super().__init__(classes="dialog-screen")
        self.relative = relative

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="dismiss-form"):
            yield Static(Text(f"Dismiss {self.relative}?"), classes="question")
            yield Input(
                placeholder="why (kept beside it in Done/)",
                max_length=MAX_REASON,
                id="reason",
            )
            yield Static("", id="reason-hint", classes="hint")
            with Horizontal(classes="buttons"):
                yield Button("Dismiss (enter)", id="dismiss", variant="error")
                yield Button("Cancel (esc)", id="cancel", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#reason", Input).focus()

    def _submit(self) -> None:
        reason = self.query_one("#reason", Input).value.strip()
        if not reason:
            self.query_one("#reason-hint", Static).update("a dismissal needs a reason")
            self.query_one("#reason", Input).focus()
            return
        self.dismiss(reason)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "dismiss":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
