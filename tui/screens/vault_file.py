"""A vault file rendered as Markdown."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer, Markdown, Static

from watchkeeper.core.vault import inside_vault
from watchkeeper.tui import decisions
from watchkeeper.tui.screens.details import DetailScreen, Scroll

PREVIEW_LIMIT = 512 * 1024
"""Bytes of a vault file shown: the preview is for reading notes, not for huge dumps."""


class VaultFileScreen(DetailScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "approve", "Approve", tooltip="Approve this Needs_Action item: to Plans/"),
        Binding("d", "dismiss_item", "Dismiss", tooltip="Dismiss this Needs_Action item"),
    ]

    def __init__(self, vault: Path, relative: str) -> None:
        super().__init__(classes="detail")
        self.vault = vault
        self.relative = relative

    def compose(self) -> ComposeResult:
        yield Static(Text(self.relative, style="bold"), classes="summary")
        with Scroll(id="file-scroll"):
            yield Markdown("", id="file-body")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#file-scroll").focus()
        self.reread()

    def action_approve(self) -> None:
        decisions.approve(self.app, self.relative, self.dismiss)  # type: ignore[arg-type]

    def action_dismiss_item(self) -> None:
        decisions.dismiss(self.app, self.relative, self.dismiss)  # type: ignore[arg-type]

    @work(thread=True, exclusive=True, exit_on_error=False)
    def reread(self) -> None:
        path = self.vault / self.relative
        if not inside_vault(self.vault, path):
            text = f"*{self.relative} points outside the vault; not shown.*"
        else:
            try:
                with path.open("rb") as file:
                    raw = file.read(PREVIEW_LIMIT + 1)
                text = raw[:PREVIEW_LIMIT].decode("utf-8", errors="replace")
                if len(raw) > PREVIEW_LIMIT:
                    text += f"\n\n*… cut at {PREVIEW_LIMIT // 1024} KiB*"
            except OSError as error:
                text = f"*cannot read {self.relative}: {error.strerror or error}*"
        self.deliver(self._show, text)

    async def _show(self, text: str) -> None:
        await self.query_one("#file-body", Markdown).update(text)
