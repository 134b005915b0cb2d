"""The quick path (tui/cli/fast.py) against typer (tui/cli/app.py): the same commands give
the same output and exit codes, whatever the quick path does not plainly understand goes
to typer, and tables printed without rich are byte for byte rich's."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import CLI
from hypothesis import given, settings
from hypothesis import strategies as st

from watchkeeper.core.history import RunRecord
from watchkeeper.core.vault import ensure_layout
from watchkeeper.tui.cli.common import PLAIN_CELLS, TABLE_WIDTH, plain_cell, plain_table
from watchkeeper.tui.cli.fast import quick

CONFIG = """
    [jobs.tick]
    command = ["true"]
    every = "5m"

    [jobs.nightly]
    command = ["true"]
    cron = "0 0 1 1 *"

    [jobs.wide]
    command = ["true"]
    every = "1h"
    """
# typer's side alone: the app tui/cli/main.py falls back to, run as the real command is.
TYPER = "import sys; sys.argv[0] = 'watchkeeper'\nfrom watchkeeper.tui.cli.app import app\napp()\n"


def vault_with_history(folder: Path) -> Path:
    """A vault with a few runs on record, one with an error only rich lays out."""
    from datetime import UTC, datetime, timedelta

    vault = folder / "vault"
    ensure_layout(vault)
    (vault / "watchkeeper.toml").write_text(textwrap.dedent(CONFIG))
    now = datetime.now(UTC)
    lines = b""
    for n, (job, status) in enumerate(
        [("tick", "success"), ("tick", "failure"), ("nightly", "success"), ("wide", "timeout")]
    ):
        started = now - timedelta(minutes=10 - n)
        lines += RunRecord(
            id=f"run-{n}",
            job=job,
            project="test",
            started_at=started,
            completed_at=started + timedelta(seconds=2),
            status=status,
            trigger="schedule",
            host="here",
            duration_ms=2000,
            error={"failure": "exit code 1", "timeout": "zu spät: 漢字"}.get(status),
        ).to_line()
    segment = vault / "Logs" / "history" / f"{now:%Y-%m-%d}.jsonl"
    segment.parent.mkdir(parents=True, exist_ok=True)
    segment.write_bytes(lines)
    return vault


def run(argv: list[str], vault: Path, through_typer: bool) -> tuple[int, str, str]:
    env = {key: value for key, value in os.environ.items() if key != "WATCHKEEPER_VAULT"}
    command = [sys.executable, "-c", TYPER] if through_typer else [str(CLI)]
    done = subprocess.run(
        [*command, *argv], capture_output=True, text=True, env=env, cwd=vault, timeout=120
    )

    # What differs between two runs of the same command: its run ids, how long it took,
    # the keeper's uptime, and `stats` reporting when its window starts.
    def same(text: str) -> str:
        text = re.sub(r"\b[0-9a-f]{11}-[0-9a-f]{6}\b", "<id>", text)
        text = re.sub(r'"since": "[^"]*"', '"since": <t>', text)
        text = re.sub(r"uptime [^,\n]+", "uptime <t>", text)
        text = re.sub(r'"uptime_s": [\d.]+', '"uptime_s": <t>', text)
        return re.sub(r"\b\d+(\.\d+)?(ms|s)\b", "<d>", text)

    return done.returncode, same(done.stdout), same(done.stderr)


def both(argvs: list[list[str]], vault: Path) -> None:
    """Each command line in turn through the quick path on one copy of the vault and
    through typer on another; the two must say the same."""
    typer_vault = vault.parent / "typer-vault"
    shutil.copytree(vault, typer_vault)
    for argv in argvs:
        quick_says = run([*argv, "--vault", str(vault)], vault, through_typer=False)
        typer_says = run([*argv, "--vault", str(typer_vault)], typer_vault, through_typer=True)
        assert quick_says == tuple(
            part.replace(str(typer_vault), str(vault)) if isinstance(part, str) else part
            for part in typer_says
        ), argv


def test_quick_commands_say_what_typer_says(tmp_path: Path) -> None:
    vault = vault_with_history(tmp_path)
    both(
        [
            ["--status"],
            ["--status", "--json"],
            [],
            ["--json"],
            ["jobs"],
            ["jobs", "--json"],
            ["history"],
            ["history", "--limit", "2"],
            ["history", "--limit=2", "--json", "--status", "failure"],
            ["history", "--job", "tick", "--since", "1h"],
            ["history", "--job", "tack"],
            ["history", "--status", "failed"],
            ["history", "--since", "yesterday-ish"],
            ["stats"],
            ["stats", "--json", "--since", "7d"],
            ["pause", "tick"],
            ["pause", "tick"],
            ["pause", "tack"],
            ["resume", "--preview"],
            ["resume", "tick", "--preview"],
            ["pause"],
            ["resume", "tick"],
            ["resume", "--skip-missed"],
            ["resume"],
            ["run", "tick", "--follow"],
            ["run", "tack"],
            ["cancel", "run-1"],
        ],
        vault,
    )


def test_quick_commands_through_a_keeper_say_what_typer_says(tmp_path: Path, daemon) -> None:
    vault = vault_with_history(tmp_path)
    daemon(vault)

    def said(argv: list[str], through_typer: bool) -> tuple[int, str, str]:
        return run([*argv, "--vault", str(vault)], vault, through_typer)

    # One keeper answers both: what only reads is asked of each in turn, and each
    # sequence that changes something leaves the keeper as it found it.
    for argv in (["--status"], ["--status", "--json"], ["jobs"], ["jobs", "--json"]):
        assert said(argv, False) == said(argv, True), argv
    sequence = [
        ["pause", "tick"],
        ["pause", "tick"],
        ["resume", "tick", "--preview"],
        ["resume", "tick"],
        ["resume", "tick"],
        ["run", "tick", "--wait"],
        ["run", "tick", "--follow"],
        ["cancel", "no-such-run"],
    ]
    by_quick = [said(argv, False) for argv in sequence]
    assert by_quick == [said(argv, True) for argv in sequence]


@pytest.mark.parametrize(
    "argv",
    [
        ["-h"],
        ["--help"],
        ["jobs", "-h"],
        ["--version"],
        ["logs"],
        ["jobs", "--bogus"],
        ["jobs", "extra"],
        ["jobs", "--json", "--json"],
        ["jobs", "--json=yes"],
        ["jobs", "--vault"],
        ["history", "--limit", "0"],
        ["history", "--limit", "ten"],
        ["history", "--limit", "-1"],
        ["history", "-f"],
        ["history", "--", "x"],
        ["run"],
        ["run", "-fx", "tick"],
        ["pause", "a", "b"],
        ["pause", "-"],
        ["--status", "jobs"],
        ["--json", "jobs"],
        ["--once"],
        ["--daemon"],
        ["--status", "--once"],
        ["--vault="],
    ],
)
def test_anything_unusual_goes_to_typer(argv: list[str]) -> None:
    assert quick(argv) is None


def test_the_console_goes_to_typer_in_a_terminal(tmp_path: Path) -> None:
    """A bare `watchkeeper` on a terminal opens the console: typer's (and textual's)."""
    import pty

    vault = vault_with_history(tmp_path)
    script = (
        "import sys\nfrom tui.cli.fast import quick\n"
        f"print('quick' if quick(['--vault', {str(vault)!r}]) is not None else 'typer')\n"
    )
    parent, child = pty.openpty()
    done = subprocess.run(
        [sys.executable, "-c", script], stdout=child, stderr=subprocess.PIPE, timeout=60
    )
    os.close(child)
    said = os.read(parent, 100).decode()
    os.close(parent)
    assert done.returncode == 0 and said.strip() == "typer"


# ---- tables -----------------------------------------------------------------------


def rich_table(headers: list[str], rows: list[list[str]], width: int) -> str:
    from rich.console import Console
    from rich.table import Table

    grid = Table(box=None, pad_edge=False, header_style="bold")
    for header in headers:
        grid.add_column(header, overflow="fold")
    for row in rows:
        grid.add_row(*row)
    out = io.StringIO()
    Console(file=out, soft_wrap=False, width=width).print(grid)
    return out.getvalue()


def test_every_plain_character_is_one_cell_wide_for_rich() -> None:
    from rich.cells import cell_len

    assert {char for char in PLAIN_CELLS if cell_len(char) != 1} == set()


PLAIN = sorted(PLAIN_CELLS)
# Mostly cells the plain path takes, now and then one that leaves the table to rich.
CELL = st.text(st.sampled_from(PLAIN), max_size=30) | st.text(
    st.sampled_from([*PLAIN, "é", "⚡", "漢", "\t"]), max_size=30
)
HEADER = st.text(st.sampled_from("ABCDEF UN"), min_size=1, max_size=9)


@settings(max_examples=300, deadline=None)
@given(
    headers=st.lists(HEADER, min_size=1, max_size=6),
    data=st.data(),
    width=st.sampled_from([20, 40, 80, TABLE_WIDTH]),
)
def test_plain_tables_are_riches_or_left_to_rich(
    headers: list[str], data: st.DataObject, width: int
) -> None:
    row = st.lists(CELL, min_size=len(headers), max_size=len(headers))
    rows = data.draw(st.lists(row, max_size=5))
    text = plain_table(headers, rows, width)
    if text is not None:
        assert text + "\n" == rich_table(headers, rows, width)
        return
    columns = [headers, *rows]
    natural = sum(max(len(r[i]) for r in columns) for i in range(len(headers)))
    other = any(not plain_cell(cell) for r in columns for cell in r)
    assert other or natural + 2 * (len(headers) - 1) > width


@pytest.mark.parametrize(
    "cell",
    ["[bold]x", "[@]", "a:ok:b", ":100:", ":1234-text:", "x\\[y]", ":smile:"],
)
def test_cells_rich_would_change_are_left_to_rich(cell: str) -> None:
    """Markup and emoji codes: rich prints something else than the text."""
    assert plain_table(["A"], [[cell]], TABLE_WIDTH) is None
    width = max(len(cell), 1)
    assert rich_table(["A"], [[cell]], TABLE_WIDTH) != f"{'A':<{width}}\n{cell:<{width}}\n"


@pytest.mark.parametrize("cell", ["12:30:00", "2026-12-06 19:43:50", ":12:ok:", "x: y: z", "a]b"])
def test_colons_and_brackets_that_are_neither_stay_plain(cell: str) -> None:
    text = plain_table(["A"], [[cell]], TABLE_WIDTH)
    assert text is not None and text + "\n" == rich_table(["A"], [[cell]], TABLE_WIDTH)
