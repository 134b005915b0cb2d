"""The cluster's workers (cluster mode, `W`): who leads, each worker's labels, heartbeat
and runs in flight, and the queues, as `watchkeeper cluster status` reads them from the
database, read again every few seconds in a thread worker."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.table import Table as RichTable
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.widgets import Footer, Static

from watchkeeper.tui.screens.details import DetailScreen, Scroll

if TYPE_CHECKING:
    from watchkeeper.core.cluster.status import ClusterStatus
    from watchkeeper.core.config_cluster import ClusterConfig

REFRESH = 2.0


def read_cluster(cluster: ClusterConfig) -> ClusterStatus:
    """One read of the cluster's state (blocking: call it from a thread worker).
    DatabaseUnavailable when the database cannot be reached."""
    # psycopg only now, in cluster mode, off the app's thread.
    from watchkeeper.core.cluster.db import connect_sync
    from watchkeeper.core.cluster.status import read_status

    with connect_sync(cluster.database) as conn:
        return read_status(conn, cluster.name, cluster.database, cluster.lease)


def _grid(headers: list[str]) -> RichTable:
    grid = RichTable(box=None, pad_edge=False, header_style="bold", expand=False)
    for header in headers:
        grid.add_column(header, no_wrap=True)
    return grid


def render(found: ClusterStatus) -> RenderableType:
    """Leader, workers and queues as the screen shows them (Text cells: a worker id holds
    colons that rich would otherwise read as an emoji code)."""
    leader = found["leader"]
    if leader is None or not leader["leads"]:
        head = Text("no leader now", style="bold")
    else:
        head = Text(
            f"leader {leader['host']} pid {leader['pid']} · epoch {leader['epoch']} · "
            f"lease left {leader['lease_left_s']:.1f}s · {len(found['standbys'])} standby(s)"
        )
    workers = _grid(["WORKER", "HOST", "LABELS", "RUNS", "HEARTBEAT", "IN FLIGHT"])
    for worker in found["workers"]:
        age = f"{worker['heartbeat_age_s']:.1f}s ago"
        workers.add_row(
            Text(worker["worker_id"]),
            Text(worker["host"]),
            Text(",".join(worker["labels"]) or "—"),
            Text(f"{len(worker['runs'])}/{worker['concurrency']}"),
            Text(age) if worker["alive"] else Text(f"{age} LOST", style="bold"),
            Text(" ".join(f"{run['job']}:{run['run_id']}" for run in worker["runs"]) or "—"),
        )
    parts: list[RenderableType] = [head, Text()]
    parts.append(workers if found["workers"] else Text("no workers"))
    parts.append(Text())
    if found["queues"]:
        queues = _grid(["QUEUE", "LABELS", "WAITING", "TAKEN"])
        for queue in found["queues"]:
            queues.add_row(
                Text(queue["queue"]),
                Text(",".join(queue["labels"]) or "—"),
                Text(str(queue["todo"])),
                Text(str(queue["doing"])),
            )
        parts.append(queues)
    else:
        parts.append(Text("queues empty"))
    return Group(*parts)


class WorkersScreen(DetailScreen):
    """The cluster's workers and queues, kept fresh while the screen is up."""

    def __init__(
        self,
        cluster: ClusterConfig,
        read: Callable[[ClusterConfig], ClusterStatus] = read_cluster,
        refresh: float = REFRESH,
    ) -> None:
        super().__init__(classes="detail")
        self.cluster = cluster
        self.read = read
        self.refresh_every = refresh
        self.shown: ClusterStatus | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text(f"cluster {self.cluster.name}: workers", style="bold"), classes="summary")
        with Scroll(id="workers-scroll"):
            yield Static("reading the cluster's database …", id="workers-body")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#workers-scroll").focus()
        self._load()
        self.set_interval(self.refresh_every, self._load)

    @work(thread=True, exclusive=True, exit_on_error=False)
    def _load(self) -> None:
        try:
            found: Any = self.read(self.cluster)
        except Exception as error:  # DatabaseUnavailable above all: shown, not fatal
            self.deliver(self._failed, str(error))
            return
        self.deliver(self._show, found)

    def _show(self, found: ClusterStatus) -> None:
        self.shown = found
        self.query_one("#workers-body", Static).update(render(found))

    def _failed(self, why: str) -> None:
        self.query_one("#workers-body", Static).update(Text(why, style="bold"))
