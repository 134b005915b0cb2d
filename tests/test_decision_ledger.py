"""An operator's decision is a ledger line that says who decided and why: in
Logs/files.jsonl without a keeper, and the same line in a cluster's database through a
real `watchkeeper --daemon` leader on a real PostgreSQL."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from cluster_daemons import Cluster, cluster_config
from conftest import run_cli, wait_for


def _ledger(vault: Path) -> list[dict[str, Any]]:
    path = vault / "Logs" / "files.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _decisions(lines: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (line["path"], line["outcome"], line["note"], line["by"], line.get("reason"))
        for line in lines
        if line["outcome"] in ("approved", "dismissed")
    ]


def _items(vault: Path) -> None:
    for name in ("keep.md", "drop.md"):
        (vault / "Needs_Action" / name).write_text(f"# {name}\n")


WANTED = [
    ("Needs_Action/keep.md", "approved", "Plans/keep.md", getpass.getuser(), None),
    ("Needs_Action/drop.md", "dismissed", "Done/drop.md", getpass.getuser(), "not\nours"),
]


def test_a_decisions_ledger_line_has_who_and_why(make_vault) -> None:
    vault = make_vault('[jobs.a]\ncommand = ["true"]\n')
    _items(vault)
    approved = run_cli("approve", "--vault", str(vault), "Needs_Action/keep.md")
    dismissed = run_cli(
        "dismiss", "--vault", str(vault), "Needs_Action/drop.md", "--reason", "not\nours"
    )
    assert approved.returncode == 0 and dismissed.returncode == 0, dismissed.stderr
    assert _decisions(_ledger(vault)) == WANTED


def test_a_cluster_leader_stores_the_same_decision_line_in_the_database(
    make_vault: Any, pg_dsn: str
) -> None:
    cluster = Cluster(make_vault(cluster_config(pg_dsn, jobs=0)), pg_dsn)
    vault = cluster.vault
    _items(vault)
    try:
        cluster.start()
        wait_for(cluster.leader, timeout=60)
        approved = run_cli("approve", "--vault", str(vault), "Needs_Action/keep.md")
        assert approved.returncode == 0, approved.stderr
        assert "through keeper pid" in approved.stdout
        dismissed = run_cli(
            "dismiss", "--vault", str(vault), "Needs_Action/drop.md", "--reason", "not\nours"
        )
        assert dismissed.returncode == 0, dismissed.stderr

        def stored() -> list[Any]:
            rows = cluster.query("SELECT entry FROM watchkeeper.files ORDER BY seq")
            return [json.loads(row[0]) for row in rows] if len(rows) >= 2 else []

        in_database = wait_for(stored)
    finally:
        cluster.stop_all()
    assert isinstance(in_database, list)
    assert _decisions(in_database) == WANTED
    assert _decisions(_ledger(vault)) == WANTED


def test_the_demos_sample_notes_approves_through_the_cli_so_the_ledger_has_it(
    tmp_path: Path,
) -> None:
    vault = tmp_path / "vault"
    assert run_cli("init", str(vault)).returncode == 0
    plan = vault / "Needs_Action" / "sample-old.plan.md"
    plan.write_text("# Plan: old\n\nSource: Needs_Action/sample-old.md\n- [ ] a\n")
    os.utime(plan, (0, 0))  # planned long ago
    env = {**os.environ, "WATCHKEEPER_VAULT": str(vault), "DEMO_PACE": "0"}
    script = vault / "scripts" / "sample_notes.py"
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, check=True
    )
    assert "approved Needs_Action/sample-old.plan.md -> Plans/sample-old.plan.md" in done.stdout
    assert (vault / "Plans" / "sample-old.plan.md").exists()
    assert _decisions(_ledger(vault)) == [
        (
            "Needs_Action/sample-old.plan.md",
            "approved",
            "Plans/sample-old.plan.md",
            getpass.getuser(),
            None,
        )
    ]
