"""The header: one line that always names the vault, the keeper's state, its uptime and
today's results, shortened to fit (at 80 columns the vault's path keeps its last parts)."""

from __future__ import annotations

from pathlib import Path

from rich.cells import cell_len
from rich.text import Text
from textual import events
from textual.widgets import Static

from watchkeeper.tui.model import Model
from watchkeeper.tui.text import STATE_GLYPHS, Clock, home_short
from watchkeeper.tui.widgets.cells import whole_seconds

ELLIPSIS = "…/"


def short_path(path: Path, room: int) -> str:
    """The path in at most `room` cells: from the home folder (~), then dropping leading
    parts (…/parent/vault); the vault's own name is kept whole where it fits at all."""
    text = home_short(path)
    if cell_len(text) <= room:
        return text
    parts = text.split("/")
    for start in range(1, len(parts)):
        tail = ELLIPSIS + "/".join(parts[start:])
        if cell_len(tail) <= room:
            return tail
    name = parts[-1]
    return name if cell_len(name) <= room else name[: max(0, room - 1)] + "…"


def cluster_role(cluster: dict[str, object] | None) -> str:
    """LEADER or STANDBY and the epoch, in cluster mode; "" otherwise (or when the
    keeper's snapshot says nothing usable)."""
    if not cluster or cluster.get("role") not in ("LEADER", "STANDBY"):
        return ""
    epoch = cluster.get("epoch")
    has_epoch = isinstance(epoch, int) and not isinstance(epoch, bool)
    return f"{cluster['role']} epoch {epoch}" if has_epoch else str(cluster["role"])


class HeaderBar(Static):
    shown: Text | None = None

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._last: tuple[Model, Clock] | None = None

    def show(self, model: Model, clock: Clock) -> None:
        self._last = (model, clock)
        text = self.compose_line(model, clock, self.size.width or 80)
        if text != self.shown:
            self.shown = text
            self.update(text)

    def on_resize(self, event: events.Resize) -> None:
        if self._last is not None:
            self.show(*self._last)

    @staticmethod
    def compose_line(model: Model, clock: Clock, width: int) -> Text:
        state = model.state
        word = state
        if model.attached_pid is not None and state in ("RUNNING", "PAUSED", "STOPPING"):
            word = f"ATTACHED pid {model.attached_pid}"
            if state != "RUNNING":
                word += f" {state}"
        fixed = [
            (" watchkeeper ", "bold reverse"),
            (f" {STATE_GLYPHS.get(state, '…')} {word} ", "bold"),
        ]
        role = cluster_role(model.cluster)
        if role:
            fixed.append((f" {role} ", "bold reverse"))
        if model.config_issues:
            fixed.append((" ⚠ config reload refused ", "bold"))
        ok, failed = model.today["ok"], model.today["failed"]
        today_long = (f" today ✔ {ok} ok · ✘ {failed} failed ", "")
        today_short = (f" ✔ {ok} ✘ {failed} ", "")
        uptime: list[tuple[str, str]] = []
        if model.started_at is not None and state not in ("STOPPED", "STARTING"):
            uptime = [(f" up {whole_seconds(clock.since(model.started_at))} ", "")]
        # Richest first; the first that leaves the vault's name its room is shown.
        choices = [
            [*fixed, *uptime, today_long],
            [*fixed, *uptime, today_short],
            [*fixed, today_short],
            fixed,
        ]
        name = model.vault.name
        for parts in choices:
            used = sum(cell_len(part) for part, _ in parts)
            if width - used >= min(cell_len(ELLIPSIS + name), 24) + 1 or parts is fixed:
                break
        text = Text(no_wrap=True, overflow="ellipsis")
        for part, style in parts:
            text.append(part, style=style)
        room = width - text.cell_len - 1
        if room > 0:
            vault = short_path(model.vault, room)
            text.append(" " * (room - cell_len(vault)) + " ")
            text.append(vault, style="dim")
        return text
