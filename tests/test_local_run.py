"""`watchkeeper run JOB` with no keeper running: a keeper in the command's own process,
through the real entry point. What it leaves is what a keeper leaves."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import final_records, run_cli


def metric(vault: Path, name: str, scope: str) -> str:
    text = (vault / "Logs" / "metrics.prom").read_text()
    found = re.search(rf'^watchkeeper_{name}\{{scope="{scope}"\}} (\S+)$', text, re.MULTILINE)
    assert found is not None, text
    return found.group(1)


def test_each_local_run_counts_the_hours_runs_from_the_history(make_vault) -> None:
    """The quota window is rebuilt from the history at each start: the third run sees
    the two before it, in each scope."""
    vault = make_vault(
        '[jobs.quick]\ncommand = ["true"]\n\n[jobs.other]\ncommand = ["sh", "-c", "exit 3"]\n'
    )
    at = ("--vault", str(vault))
    assert run_cli("run", "quick", *at).returncode == 0
    assert run_cli("run", "other", *at).returncode == 1
    assert run_cli("run", "quick", *at).returncode == 0
    assert metric(vault, "quota_used", "global") == "3"
    assert metric(vault, "quota_used", "quick") == "2"
    statuses = sorted(record["status"] for record in final_records(vault).values())
    assert statuses == ["failure", "success", "success"]
    dashboard = (vault / "Dashboard.md").read_text()
    assert "quick" in dashboard and "other" in dashboard
