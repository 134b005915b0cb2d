"""The Executor a cluster leader runs with: each run goes by its `runs_on` to the
LocalExecutor (`"keeper"`, and every hook) or to a worker (core/cluster/remote.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from watchkeeper.core.cluster.remote import LAPSE, RemoteExecutor, RemoteStarted
from watchkeeper.core.runner import LocalExecutor, RunSpec

ON_KEEPER = ("keeper",)


class RoutingExecutor:
    """The Executor a cluster leader runs with: `runs_on = "keeper"` runs (and every
    hook) here, through the LocalExecutor; every other run on a worker."""

    def __init__(self, local: LocalExecutor, remote: RemoteExecutor) -> None:
        self.local, self.remote = local, remote

    def submit(self, batch: list[tuple[Any, RunSpec]]) -> None:
        here = [item for item in batch if item[1].runs_on == ON_KEEPER]
        away = [item for item in batch if item[1].runs_on != ON_KEEPER]
        if here:
            self.local.submit(here)
        if away:
            self.remote.submit(away)

    def watch(self, spec: RunSpec, started: Any, on_output: Callable[[bytes], None]) -> Any:
        if isinstance(started, RemoteStarted):
            return self.remote.watch(spec, started, on_output)
        return self.local.watch(spec, started, on_output)

    def run(self, spec: RunSpec, on_output: Callable[[bytes], None]) -> Any:
        return self.local.run(spec, on_output)

    def shutdown(self) -> None:
        self.local.shutdown()
        self.remote.shutdown()

    async def adopt(self, tokens: list[tuple[Any, str]]) -> dict[str, RunSpec]:
        return await self.remote.adopt(tokens)

    def cancel(self, run_id: str, status: str, reason: str) -> bool:
        """End a run submitted to a worker that no worker has started yet (a keeper's
        stop of a run without a handle): False for a run that is not a remote one."""
        if not self.remote.has(run_id):
            return False
        self.remote.cancel(run_id, status, reason)
        return True


def cluster_executor(
    dsn: str, cluster: str, lapse: float = LAPSE, log: Callable[[str], None] = lambda m: None
) -> Callable[[Callable[[list[tuple[Any, Any]]], None]], RoutingExecutor]:
    """What Keeper(executor=...) takes: a factory given the keeper's deliver callback."""

    def make(deliver: Callable[[list[tuple[Any, Any]]], None]) -> RoutingExecutor:
        return RoutingExecutor(
            LocalExecutor(deliver), RemoteExecutor(deliver, dsn, cluster, lapse, log=log)
        )

    return make
