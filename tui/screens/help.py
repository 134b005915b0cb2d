"""Every key of the console on one screen that fits 80x24: two columns of sections."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table as RichTable
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Footer, Static

from watchkeeper.tui.screens.details import DetailScreen, Scroll

Section = tuple[str, list[tuple[str, str]]]

KEY_WIDTH = 9
LEFT: list[Section] = [
    (
        "Jobs and runs",
        [
            ("r", "run the selected job now"),
            ("p", "pause or resume the job"),
            ("P", "pause or resume everything"),
            ("x", "cancel the selected run"),
            ("R", "params form; History: retry"),
            ("e", "edit config or vault file"),
            ("a d", "approve / dismiss an item"),
            ("enter", "details; Log: keeper/job log"),
        ],
    ),
    (
        "Panes",
        [
            ("tab", "next pane"),
            ("shift+tab", "previous pane"),
            ("1-5", "Jobs Vault History Log Quota"),
            ("z", "zoom the pane (z, esc back)"),
            ("/", "filter Jobs or History"),
            ("s S", "sort by a column / reverse"),
            ("W", "cluster: workers and queues"),
        ],
    ),
]
RIGHT: list[Section] = [
    (
        "In every list and the log",
        [
            ("j ↓", "down"),
            ("k ↑", "up"),
            ("g home", "first"),
            ("G end", "last"),
            ("ctrl+d", "half a page down"),
            ("ctrl+u", "half a page up"),
            ("pgdn pgup", "a page down / up"),
        ],
    ),
    (
        "Log",
        [
            ("f", "follow the end on or off"),
            ("w", "wrap long lines on or off"),
            ("/", "search the log"),
            ("n N", "next / previous match"),
        ],
    ),
    (
        "Everywhere",
        [
            ("?", "this help"),
            ("ctrl+p", "command palette, themes"),
            ("q", "quit (asks if runs are on)"),
            ("escape", "back, close, clear"),
        ],
    ),
]
LEGEND = "✔ success ✘ failure ⧗ timeout ↷ skipped ■ cancelled ⚡ interrupted ▶ running"


def keys_column(sections: list[Section]) -> Group:
    parts: list[RenderableType] = []
    for index, (title, rows) in enumerate(sections):
        if index:
            parts.append(Text(""))
        parts.append(Text(title, style="underline"))
        table = RichTable.grid(padding=(0, 1))
        table.add_column(style="bold", no_wrap=True, width=KEY_WIDTH)
        table.add_column(no_wrap=True, overflow="ellipsis")
        for keys, what in rows:
            table.add_row(Text(keys), Text(what))
        parts.append(table)
    return Group(*parts)


def all_keys() -> set[str]:
    """Every key the help names (a test holds the console's bindings against it)."""
    return {key for _, rows in LEFT + RIGHT for keys, _ in rows for key in keys.split()}


class HelpScreen(DetailScreen):
    def __init__(self) -> None:
        super().__init__(classes="detail")

    def compose(self) -> ComposeResult:
        yield Static(Text("Keys", style="bold"), classes="summary")
        with Scroll(id="help-scroll"):
            with Horizontal(id="help-columns"):
                yield Static(keys_column(LEFT), classes="help-column")
                yield Static(keys_column(RIGHT), classes="help-column")
            yield Static(Text(LEGEND), id="help-legend")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#help-scroll").focus()
