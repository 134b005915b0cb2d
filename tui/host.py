"""What the console's parts (Operations, Readers) need of the app, as a Protocol: they
import this, not tui.app, so no import runs back into the app (ConsoleApp fits it)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from textual.notifications import SeverityLevel
from textual.screen import Screen

from watchkeeper.core.client import KeeperClient
from watchkeeper.core.config import Config
from watchkeeper.tui.model import Model
from watchkeeper.tui.text import Clock


class ConsoleHost(Protocol):
    model: Model
    config: Config
    vault: Path
    clock: Clock
    created: float
    closing: bool

    @property
    def client(self) -> KeeperClient: ...

    @property
    def keeper_started(self) -> bool: ...

    @property
    def screen(self) -> Screen[object]: ...

    def redraw(self) -> None: ...

    def refresh_snapshot(self) -> None: ...

    # Textual's App, as much of it as the parts use.

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None: ...

    def push_screen(self, screen: Screen[Any], callback: Any = None) -> Any: ...

    def run_worker(
        self,
        work: Callable[[], None],
        name: str | None = "",
        group: str = "default",
        description: str = "",
        exit_on_error: bool = True,
        start: bool = True,
        exclusive: bool = False,
        thread: bool = False,
    ) -> Any: ...

    def call_from_thread(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> Any: ...

    def suspend(self) -> AbstractContextManager[None]: ...
