"""The resume preview: before a paused job (or everything) resumes, what it would fire."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from watchkeeper.core.resume import ResumePlan, describe


class ResumeScreen(ModalScreen[str | None]):
    """Answers "with" (everything that piled up), "without" (leave out the catch-up runs
    of missed slots) or None (stay paused)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("w,y", "answer('with')", "Resume with them"),
        Binding("o", "answer('without')", "Without missed runs"),
        Binding("escape,c", "answer(None)", "Cancel"),
    ]

    def __init__(self, plan: ResumePlan) -> None:
        super().__init__(classes="dialog-screen")
        self.plan = plan
        self.optional = any(run.optional for run in plan.runs)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text("\n".join([*describe(self.plan), ""])), classes="question")
            with Horizontal(classes="buttons"):
                if self.optional:
                    yield Button("With them (w)", id="with", variant="primary")
                    yield Button("Without missed (o)", id="without")
                else:
                    yield Button("Resume (y)", id="with", variant="primary")
                yield Button("Cancel (c)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def action_answer(self, answer: str | None) -> None:
        if answer == "without" and not self.optional:
            return
        self.dismiss(answer)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None if event.button.id == "cancel" else event.button.id)
