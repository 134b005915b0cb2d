"""The run-with-parameters form (`R`): one field a declared param, prefilled, enter runs.
Its answer is every param's value, or None when the operator thinks better of it."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from watchkeeper.core.environment import is_secret_name
from watchkeeper.core.param_rules import MAX_VALUE


class ParamsScreen(ModalScreen[dict[str, str] | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, job: str, defaults: dict[str, str], values: dict[str, str]) -> None:
        """`defaults`: the job's declared params; `values`: what the fields start with."""
        super().__init__(classes="dialog-screen")
        self.job = job
        self.defaults = defaults
        self.values = values

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="params-form"):
            yield Static(Text(f"Run {self.job} with:"), classes="question")
            with VerticalScroll(id="params-fields"):
                for name, default in self.defaults.items():
                    with Horizontal(classes="param-row"):
                        yield Label(Text(name), classes="param-name")
                        yield Input(
                            value=self.values.get(name, default),
                            placeholder=f"default: {default}" if default else "empty",
                            max_length=MAX_VALUE,
                            # Typed secrets are not shown to whoever looks over a shoulder.
                            password=is_secret_name(name),
                            id=f"param-{name}",
                        )
            with Horizontal(classes="buttons"):
                yield Button("Run (enter)", id="run", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query(Input).first().focus()

    def chosen(self) -> dict[str, str]:
        return {name: self.query_one(f"#param-{name}", Input).value for name in self.defaults}

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(self.chosen())

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(self.chosen() if event.button.id == "run" else None)

    def action_cancel(self) -> None:
        self.dismiss(None)
