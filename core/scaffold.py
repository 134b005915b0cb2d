"""`watchkeeper init`: a new vault with its folders, demo scripts and a commented config."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import tomli_w

from watchkeeper.core.config import CONFIG_NAME
from watchkeeper.core.vault import ensure_layout

DEMO_DIR = Path(__file__).parent / "demo"
DEMO_SCRIPTS = ("watcher.py", "task_planner.py", "plan_worker.py", "archive.py", "sample_notes.py")

WELCOME = """# Welcome to watchkeeper

This note arrived in Inbox. The vault-watcher job moves it to Needs_Action,
then task-planner writes a plan for it, Welcome.plan.md, which waits in
Needs_Action until you decide.

- Approve the plan: select it in the console's Vault pane and press a
  (or run `watchkeeper approve Needs_Action/Welcome.plan.md`)
- Approval moves it to Plans, and plan-worker works through it
- The archiver job files it into Done
- Or dismiss it with d (`watchkeeper dismiss PATH --reason TEXT`): it goes to Done
  with a note of why

Meanwhile the sample-notes job drops a sample note into Inbox now and then and
finishes it a little later, so there is always something flowing to watch.
Remove [jobs.sample-notes] from watchkeeper.toml when the vault is yours.
"""

# Each section: the comment block above it, then its data (written by tomli-w).
SECTIONS: list[tuple[str, dict[str, Any]]] = [
    (
        "# watchkeeper.toml: the keeper's jobs for this vault.\n"
        "# Durations: 500ms, 30s, 5m, 1h30m, 2d. Sizes: 512KB, 5MB, 1GB.\n"
        "# Check this file with `watchkeeper validate`.\n\n"
        "[keeper]\n"
        '# timezone = "Europe/Berlin"   # cron time zone; default: the machine\'s\n'
        "# max_runs_per_hour = 0        # global quota over a sliding hour; 0 = none\n"
        '# kill_grace = "5s"            # TERM, then KILL after this long\n'
        '# shutdown_grace = "30s"       # on SIGTERM, how long runs may finish',
        {
            "keeper": {
                "max_parallel": 4,
                "log_max_size": "5MB",
                "log_backups": 3,
                "history_retention_days": 30,
                "catch_up": "once",
            }
        },
    ),
    (
        "# Moves each note dropped into Inbox to Needs_Action, and sweeps Inbox every 30s.\n"
        '# Triggers: every = "5m", cron = "0 3 * * *", on_files = ["Inbox/*.md"],\n'
        '# after = ["other-job"]; none at all means the job runs only when named.',
        {
            "jobs": {
                "vault-watcher": {
                    "description": "Move new notes from Inbox to Needs_Action",
                    "command": ["python3", "scripts/watcher.py"],
                    "on_files": ["Inbox/*.md"],
                    "settle": "1s",
                    "every": "30s",
                    "overlap": "queue",
                }
            }
        },
    ),
    (
        "# Runs each time vault-watcher succeeds; a plain string runs under /bin/sh -c.\n"
        "# Its plans wait in Needs_Action until approved (a in the console, `watchkeeper\n"
        "# approve PATH`) or dismissed (d, `watchkeeper dismiss PATH --reason TEXT`).",
        {
            "jobs": {
                "task-planner": {
                    "description": "Write a plan into Plans for each Needs_Action note",
                    "command": "python3 scripts/task_planner.py",
                    "after": ["vault-watcher"],
                    # A note handed over while a plan is being written is planned next,
                    # not skipped.
                    "overlap": "queue",
                    "timeout": "1m",
                    "retries": 2,
                    "retry_delay": "10s",
                }
            }
        },
    ),
    (
        "# Approving a plan moves it to Plans, which hands it to this job (on_files);\n"
        "# every minute it also sweeps Plans for approved plans left unworked.",
        {
            "jobs": {
                "plan-worker": {
                    "description": "Work through each approved plan (ticks its boxes)",
                    "command": ["python3", "scripts/plan_worker.py"],
                    "on_files": ["Plans/*.plan.md"],
                    "every": "1m",
                    "overlap": "queue",
                }
            }
        },
    ),
    (
        "# Files finished work into Done every minute.\n"
        '# cron takes 5 fields, or 6 with seconds first ("*/10 * * * * *": every 10s).',
        {
            "jobs": {
                "archiver": {
                    "description": "Move items whose plan is all ticked into Done",
                    "command": ["python3", "scripts/archive.py"],
                    "cron": "* * * * *",
                    "overlap": "skip",
                }
            }
        },
    ),
    (
        "# Demo only: drops a sample note into Inbox every 20s (while fewer than 3 wait)\n"
        "# and later approves its plan, so work visibly flows Inbox -> Needs_Action -> Plans\n"
        "# -> Done. The demo jobs take DEMO_PACE seconds (default 1.5) when they have work,\n"
        "# so that you can see them RUNNING. Delete this job when the vault is yours.",
        {
            "jobs": {
                "sample-notes": {
                    "description": "Drop a sample note into Inbox now and then (demo)",
                    "command": ["python3", "scripts/sample_notes.py"],
                    "every": "20s",
                    "overlap": "skip",
                }
            }
        },
    ),
]


def _inline_short_arrays(text: str) -> str:
    """tomli-w puts every array on several lines; short ones read better on one."""

    def join(match: re.Match[str]) -> str:
        items = [item.strip().rstrip(",") for item in match.group(2).strip().splitlines()]
        inline = f"{match.group(1)}[{', '.join(items)}]"
        return inline if len(inline) <= 88 else match.group(0)

    return re.sub(r"^(\w[\w-]* = )\[\n((?:    .*\n)+)\]", join, text, flags=re.MULTILINE)


def demo_config() -> str:
    parts = []
    for comment, data in SECTIONS:
        body = _inline_short_arrays(tomli_w.dumps(data))
        if "keeper" in data:
            # The comment block already opened [keeper] so its commented keys sit inside it.
            body = body.replace("[keeper]\n", "", 1)
        parts.append(f"{comment}\n{body}")
    return "\n".join(parts)


def init_vault(vault: Path) -> list[Path]:
    """Create what is missing; never overwrite a file that is already there."""
    ensure_layout(vault)
    created: list[Path] = []
    config = vault / CONFIG_NAME
    if not config.exists():
        config.write_text(demo_config(), encoding="utf-8")
        created.append(config)
    scripts = vault / "scripts"
    scripts.mkdir(exist_ok=True)
    for name in DEMO_SCRIPTS:
        target = scripts / name
        if not target.exists():
            shutil.copyfile(DEMO_DIR / name, target)
            created.append(target)
    welcome = vault / "Inbox" / "Welcome.md"
    if not any(
        (vault / folder / "Welcome.md").exists() for folder in ("Inbox", "Needs_Action", "Done")
    ):
        welcome.write_text(WELCOME, encoding="utf-8")
        created.append(welcome)
    return created
