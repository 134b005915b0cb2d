"""Quitting while runs are in flight: wait for them, stop them, or stay."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


def runs_are(running: int) -> str:
    """ "1 run is", "3 runs are"."""
    return "1 run is" if running == 1 else f"{running} runs are"


class QuitScreen(ModalScreen[str | None]):
    """Answers "wait", "stop" or None (stay)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("w", "answer('wait')", "Wait for them"),
        Binding("s", "answer('stop')", "Stop them"),
        Binding("escape,c", "answer(None)", "Cancel"),
    ]

    def __init__(self, running: int) -> None:
        super().__init__(classes="dialog-screen")
        self.running = running

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(
                Text(f"{runs_are(self.running)} in flight. Quit anyway?\n"),
                classes="question",
            )
            with Horizontal(classes="buttons"):
                yield Button("Wait for them (w)", id="wait", variant="primary")
                yield Button("Stop them (s)", id="stop", variant="error")
                yield Button("Cancel (c)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def action_answer(self, answer: str | None) -> None:
        self.dismiss(answer)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None if event.button.id == "cancel" else event.button.id)
