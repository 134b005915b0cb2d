"""/healthz, /readyz and the keeper's half of /metrics.

Healthy: the keeper's loop answers a `status` within HEALTH_TIMEOUT (the answer is made
on that loop, so a hung loop fails it). Ready: healthy, holding the vault's lock (its
socket is named in the lock record) or a cluster's LEADER or STANDBY, the config not
refused since it was last loaded, and in cluster mode the database reachable.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from watchkeeper.core.config import ConfigError, load_config
from watchkeeper.core.control_protocol import ControlError
from watchkeeper.core.metrics import METRICS_NAME
from watchkeeper.core.serve.link import ask

HEALTH_TIMEOUT = 2.0
DATABASE_TIMEOUT = 2
_UP = re.compile(r"^watchkeeper_up (\S+)$", re.M)


class ConfigWatch:
    """Whether the keeper refused its config file the last time it read it: from the
    keeper's config_error / config_reloaded events, and at the server's start from
    loading the file (a keeper that runs had it good once; a bad file now was refused,
    or will be on its next read)."""

    def __init__(self, config_path: Path) -> None:
        self.path = config_path
        self.refused: list[str] = []
        self.keeper_pid: int | None = None

    def check_file(self) -> None:
        try:
            load_config(self.path)
        except ConfigError as error:
            self.refused = [str(issue) for issue in error.issues]
        else:
            self.refused = []

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "config_error":
            issues = data.get("issues")
            self.refused = [str(i) for i in issues] if isinstance(issues, list) else ["refused"]
        elif kind == "config_reloaded":
            self.refused = []
        elif kind == "resync":
            pid = (data.get("snapshot") or {}).get("pid")
            if pid is not None and pid != self.keeper_pid:
                self.refused = []  # a keeper that started read its config whole
            self.keeper_pid = pid


async def health(vault: Path) -> tuple[bool, dict[str, Any]]:
    try:
        answer = await ask(vault, "status", HEALTH_TIMEOUT, role="read")
    except ControlError as error:
        return False, {"ok": False, "error": str(error)}
    status = answer["status"]
    return True, {"ok": True, "pid": status.get("pid"), "state": status.get("state")}


async def ready(
    vault: Path, watch: ConfigWatch, database: str | None
) -> tuple[bool, dict[str, Any]]:
    checks: dict[str, str] = {}
    try:
        status = (await ask(vault, "status", HEALTH_TIMEOUT, role="read"))["status"]
    except ControlError as error:
        status = None
        checks["keeper"] = str(error)
    else:
        checks["keeper"] = "ok"
        watch.keeper_pid = watch.keeper_pid or status.get("pid")
        role = status.get("role")
        state = status.get("state")
        if role is not None:
            checks["role"] = "ok" if role in ("LEADER", "STANDBY") else f"role {role}"
        elif state in ("STOPPING", "STOPPED"):
            checks["role"] = f"the keeper is {state.lower()}"
        else:
            checks["role"] = "ok"  # it answers on the socket its lock record names
    checks["config"] = (
        "ok" if not watch.refused else "reload refused: " + "; ".join(watch.refused[:3])
    )
    if database is not None:
        checks["database"] = await asyncio.to_thread(_database, database)
    ok = all(value == "ok" for value in checks.values())
    return ok, {"ready": ok, "checks": checks, "pid": status and status.get("pid")}


def _database(dsn: str) -> str:
    try:
        import psycopg

        with psycopg.connect(dsn, connect_timeout=DATABASE_TIMEOUT):
            return "ok"
    except Exception as error:  # psycopg's errors, a bad URL, the extra not installed
        return f"unreachable: {type(error).__name__}: {str(error).strip()[:200]}"


def keeper_metrics(vault: Path, keeper_up: bool) -> str:
    """The keeper's Logs/metrics.prom, with watchkeeper_up saying whether it answered
    now (the file keeps saying 1 after a keeper was killed)."""
    try:
        text = (vault / "Logs" / METRICS_NAME).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""
    up = "1" if keeper_up else "0"
    if _UP.search(text):
        return _UP.sub(f"watchkeeper_up {up}", text)
    header = "# HELP watchkeeper_up 1 while the keeper runs.\n# TYPE watchkeeper_up gauge\n"
    return text + header + f"watchkeeper_up {up}\n"
