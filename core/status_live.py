"""What `--status` reports when a keeper answers: its snapshot, and the vault's folders.
Apart from core/status.py (the files' view) so that asking a keeper reads, and imports,
nothing of the history."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from watchkeeper.core.vault import summarize_all

if TYPE_CHECKING:
    from watchkeeper.core.config import Config
    from watchkeeper.core.control_protocol import Snapshot


def folders_view(vault: Path) -> dict[str, dict[str, Any]]:
    return {
        folder.name: {"count": folder.count, "newest": list(folder.newest)}
        for folder in summarize_all(vault)
    }


def _cluster_role(snapshot: Snapshot) -> dict[str, Any]:
    """In cluster mode: LEADER, or STANDBY when a standby forwarded the question, and the
    leader's epoch (core/cluster/role.py, core/cluster/proxy.py)."""
    extra: dict[str, Any] = dict(snapshot)
    return {key: extra[key] for key in ("role", "epoch", "leader") if key in extra}


def live_status(config: Config, snapshot: Snapshot) -> dict[str, Any]:
    """vault_status's shape from a running keeper's snapshot: what it knows (jobs in
    flight, interval slots, quota) instead of what the files say; no history is read."""
    return {
        "vault": str(config.vault),
        "keeper": {
            "running": True,
            "pid": snapshot["pid"],
            "hostname": snapshot["host"],
            "started_at": snapshot["started_at"],
            "uptime_s": snapshot["uptime_s"],
            "state": snapshot["state"],
            "runs_in_flight": snapshot["running"],
            "waiting_for_a_slot": snapshot["waiting"],
            **_cluster_role(snapshot),
        },
        "source": "keeper",
        "paused": snapshot["paused"],
        "folders": folders_view(config.vault),
        "today": snapshot["today"],
        "jobs": snapshot["jobs"],
        "quota": snapshot["quota"],
        "history_bad_lines": 0,
    }
