"""Cell texts of the panes' tables, and the theme colours they are drawn in.

Cells are Rich Text, never str: DataTable parses str as markup, and job and file names
are data. Each starts with one space, the gap to the cell before: the tables draw no
padding of their own, which at 80 columns buys a readable width for every column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text

from watchkeeper.core.history import status_label
from watchkeeper.core.units import format_duration
from watchkeeper.tui.text import status_class


@dataclass(frozen=True)
class Palette:
    """Theme colours for cell text (DataTable cells are Rich text, not CSS)."""

    success: str
    error: str
    warning: str
    accent: str

    def of(self, status: str) -> str:
        return str(getattr(self, status_class(status)))


def palette_from(theme: Any) -> Palette:
    return Palette(
        success=theme.success or "green",
        error=theme.error or "red",
        warning=theme.warning or "yellow",
        accent=theme.accent or theme.primary,
    )


def whole_seconds(seconds: float) -> str:
    """Ticking texts in whole seconds: 0s, 7s, 4m05s (never 850ms, never 4.1s)."""
    return format_duration(float(int(seconds))) if seconds >= 1 else "0s"


def plain(value: object, style: str = "") -> Text:
    return Text(f" {value}", style=style, no_wrap=True, overflow="ellipsis")


def status_cell(status: str, palette: Palette, suffix: str = "") -> Text:
    text = Text(" ", no_wrap=True, overflow="ellipsis")
    text.append(status_label(status), style=palette.of(status))
    if suffix:
        text.append(suffix)
    return text
