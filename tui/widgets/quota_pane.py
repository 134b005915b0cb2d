"""The Quota pane: global and per-job runs over the sliding hour against their limits,
when the next slot frees, and runs per minute over the last hour."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Sparkline, Static

from watchkeeper.tui.model import Model
from watchkeeper.tui.text import Clock, parse_time
from watchkeeper.tui.widgets.cells import plain, whole_seconds
from watchkeeper.tui.widgets.pane import Pane
from watchkeeper.tui.widgets.table import ColumnSpec, Table

COLUMNS = [
    ColumnSpec("scope", "SCOPE", 9, flex=1),
    ColumnSpec("used", "USED", 7),
    ColumnSpec("frees", "FREES", 7),
]
KEYS = tuple(spec.key for spec in COLUMNS)


def shown_order(quota: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Global first, then the scopes with a limit (what can refuse a run), then the rest."""
    return sorted(quota, key=lambda usage: (usage["scope"] != "global", not usage.get("limit")))


class QuotaPane(Pane):
    number, pane_name = 5, "Quota"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(id="quota-pane", **kwargs)
        self.table = Table(COLUMNS, id="quota")
        self.summary = Static(id="quota-summary")
        self.spark = Sparkline([0] * 60, id="quota-spark")
        self._summary = ""

    def compose(self) -> ComposeResult:
        yield self.table
        yield self.summary
        yield self.spark

    def main(self) -> Table:
        return self.table

    def draw(self, model: Model, clock: Clock) -> None:
        table = self.table
        rows = {usage["scope"]: usage for usage in shown_order(model.quota)}
        if list(rows) != table.row_keys():
            keep = table.key_at_cursor()
            table.clear()
            for scope, usage in rows.items():
                table.add_row(*self.cells(usage, clock), key=scope)
            table.move_to_key(keep)
        else:
            for scope, usage in rows.items():
                for column, value in zip(KEYS, self.cells(usage, clock), strict=True):
                    if table.get_cell(scope, column) != value:
                        table.update_cell(scope, column, value)
        now = clock.now().timestamp()
        per_minute = model.runs_per_minute(now)
        summary = f" {model.runs_last_hour} runs/h · peak {max(per_minute)}/min"
        if summary != self._summary:
            self._summary = summary
            self.summary.update(Text(summary, no_wrap=True, overflow="ellipsis"))
        self.spark.data = per_minute
        self.redraws += 1

    @staticmethod
    def cells(usage: dict[str, Any], clock: Clock) -> list[Text]:
        limit = usage.get("limit") or 0
        used = usage.get("used") or 0
        frees = "—"
        if limit:
            if used >= limit:
                frees = whole_seconds(clock.until(parse_time(usage.get("next_free"))))
            else:
                frees = "now"
        return [plain(usage["scope"]), plain(f"{used}/{limit or '∞'}"), plain(frees)]
