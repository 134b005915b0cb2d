"""What every `watchkeeper` command shares: exit codes, printing, finding and loading the
vault, the way times, durations and tables are printed, and the link to a running
keeper. Command modules import from here (typer's shared options are in cli_options),
never from each other or from watchkeeper.tui.cli.

No typer, rich or asyncio here: the quick commands (tui/cli/fast.py) run on this module
alone. A command ends with `raise fail(...)` or `raise SystemExit(code)`, which typer lets
through as it does its own Exit."""

from __future__ import annotations

import gc
import json
import os
import re
import sys
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from watchkeeper.core.config import CONFIG_NAME, Config, ConfigError, load_config
from watchkeeper.core.locations import default_vault, find_vault
from watchkeeper.core.names import json_text

if TYPE_CHECKING:
    import typer

    from watchkeeper.core.control_client import Connection
    from watchkeeper.core.lock import VaultLock

T = TypeVar("T")
EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE, EXIT_LOCKED, EXIT_NO_KEEPER = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130  # Ctrl-C while waiting, as shells report SIGINT
FAILED_STATUSES = ("failure", "timeout", "cancelled", "interrupted")
NO_VAULT = f"no {CONFIG_NAME} here or above"
HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}
TABLE_WIDTH = 200  # a table's width when stdout is not a terminal
# click.echo strips these when its stream is not a terminal; echo() does as it did.
_ANSI = re.compile(r"\033\[[;?0-9]*[a-zA-Z]")


def echo(message: str = "", err: bool = False) -> None:
    """A line on stdout (stderr with `err`), flushed, as typer.echo prints it."""
    stream = sys.stderr if err else sys.stdout
    if "\033" in message and not stream.isatty():
        message = _ANSI.sub("", message)
    stream.write(message + "\n")
    stream.flush()


def fail(message: str, code: int = EXIT_USAGE) -> SystemExit:
    echo(f"watchkeeper: {message}", err=True)
    return SystemExit(code)


def note(message: str) -> None:
    """A remark on stderr, so that stdout (a table, --json) stays clean."""
    echo(f"watchkeeper: {message}", err=True)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    from watchkeeper.core.suggest import did_you_mean as suggest  # difflib: only on a mistake

    return suggest(word, choices)


# ---- the vault ---------------------------------------------------------------------


def vault_flag(ctx: typer.Context, vault: Path | None) -> Path | None:
    """--vault after the command, else before it (`watchkeeper --vault V jobs`)."""
    return vault or (ctx.obj or {}).get("vault")


def locate_vault(
    flag: Path | None, demo: bool = False, hint: str = "pass --vault"
) -> tuple[Path, str]:
    """The vault a command acts on (`flag`: --vault), and how it was found. Only the
    commands that may (the console, --status, jobs) fall back to the demo vault, with
    `demo`; the others need one found by flag, $WATCHKEEPER_VAULT or an ancestor's
    watchkeeper.toml, else exit 2: a command run in the wrong folder must not quietly
    act on the demo."""
    path, source = find_vault(flag)
    if source == "default" and not demo:
        if (default_vault() / CONFIG_NAME).exists():
            hint += f" (the demo vault is {default_vault()})"
        raise fail(f"{NO_VAULT}; {hint}")
    return path, source


def vault_path(flag: Path | None) -> Path:
    return locate_vault(flag)[0]


def open_config(flag: Path | None, demo: bool = False, hint: str = "pass --vault") -> Config:
    """Load the vault's config; with `demo`, the default vault is created on first use."""
    path, source = locate_vault(flag, demo, hint)
    config_file = path / CONFIG_NAME
    if not config_file.exists():
        if source != "default":
            raise fail(f"no {CONFIG_NAME} in {path} (from {source}): run `watchkeeper init {path}`")
        from watchkeeper.core.scaffold import init_vault

        init_vault(path)
        note(f"created the demo vault at {path}")
    return read_config(config_file)


def read_config(config_file: Path) -> Config:
    """The config at `config_file`; every problem printed (file:line: key: why), exit 2."""
    try:
        return load_config(config_file)
    except ConfigError as error:
        for issue in error.issues:
            echo(str(issue), err=True)
        raise fail(f"{len(error.issues)} error(s) in {config_file}") from None


def unknown_job(config: Config, job: str) -> SystemExit:
    jobs = ", ".join(config.jobs) or "none"
    return fail(f"no job {job!r} in {config.path}{did_you_mean(job, config.jobs)}; jobs: {jobs}")


def check_choice(option: str, value: str, choices: Iterable[str]) -> None:
    choices = list(choices)
    if value not in choices:
        raise fail(
            f"{option}: expected one of {', '.join(choices)}, got {value!r}"
            + did_you_mean(value, choices)
        )


def since_option(value: str, config: Config) -> datetime:
    from watchkeeper.core.since import parse_since

    try:
        return parse_since(value, config.keeper.tz)
    except ValueError as error:
        raise fail(f"--since: {error}") from None


# ---- printing ----------------------------------------------------------------------


def print_json(data: Any) -> None:
    # json_text: a file name that is not UTF-8 comes out as \udcXX escapes
    echo(json_text(json.dumps(data, indent=2, ensure_ascii=False)))


def local_time(iso: str | None, tz: Any, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    if not iso:
        return "—"
    return datetime.fromisoformat(iso).astimezone(tz).strftime(fmt)


def duration_text(ms: float | None) -> str:
    """A run's duration as every command prints it: 850ms, 12s, 4m05s."""
    if ms is None:
        return "—"
    from watchkeeper.core.units import format_duration

    return format_duration(ms / 1000)


# Characters whose width in a terminal cell rich agrees is one (tests/test_cli_fast.py
# checks each against rich): printable ASCII and the glyphs the tables hold.
PLAIN_CELLS = frozenset(map(chr, range(0x20, 0x7F))) | frozenset("—∞▶✔✘⧗↷■")
# rich reads a cell's text as markup ("[bold]") and emoji codes (":ok:"), as rich does;
# its emoji names all hold a letter but these.
_EMOJI_CODE = re.compile(r"(:(\S*?)(?:(?:\-)(emoji|text))?:)")
_DIGIT_EMOJI = ("100", "1234")


def plain_cell(cell: str) -> bool:
    """Whether rich prints `cell` as it is, one cell per character."""
    if "[" in cell or not PLAIN_CELLS.issuperset(cell):
        return False
    return all(
        name.isdigit() and name not in _DIGIT_EMOJI for _, name, _ in _EMOJI_CODE.findall(cell)
    )


def plain_table(headers: list[str], rows: list[list[str]], width: int) -> str | None:
    """The table as rich prints it with no box and no style (columns two spaces apart,
    every line padded to the table's width), or None when rich would do more: a cell of
    markup, an emoji code or a character of another width, or a table wider than
    `width`, which rich folds."""
    columns = [headers, *rows]
    if not all(plain_cell(cell) for row in columns for cell in row):
        return None
    widths = [max(len(row[index]) for row in columns) for index in range(len(headers))]
    if sum(widths) + 2 * (len(widths) - 1) > width:
        return None
    return "\n".join(
        "  ".join(cell.ljust(size) for cell, size in zip(row, widths, strict=True))
        for row in columns
    )


def _styled_output() -> bool:
    """Whether rich would style or size the table for a terminal (it reads these too)."""
    return sys.stdout.isatty() or bool(
        os.environ.get("FORCE_COLOR") or os.environ.get("TTY_COMPATIBLE") == "1"
    )


def table(headers: list[str], rows: list[list[str]]) -> None:
    if not _styled_output():
        text = plain_table(headers, rows, TABLE_WIDTH)
        if text is not None:
            echo(text)
            return
    from rich.console import Console
    from rich.table import Table

    grid = Table(box=None, pad_edge=False, header_style="bold")
    for header in headers:
        grid.add_column(header, overflow="fold")
    for row in rows:
        grid.add_row(*row)
    Console(soft_wrap=False, width=None if sys.stdout.isatty() else TABLE_WIDTH).print(grid)


def detach_stdout() -> None:
    """The reader went away (`| head`): point stdout at /dev/null so that the
    interpreter's last flush does not complain either."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


# ---- the keeper ---------------------------------------------------------------------


def settle() -> None:
    """From here the command may go on for long (a run in this process, a run waited for
    or followed): the collector, off while a quick command starts (tui/cli/main.py), runs
    again, past what the imports made, which it would only walk for nothing."""
    gc.freeze()
    gc.enable()


def acquire_lock(vault: Path) -> VaultLock:
    from watchkeeper.core.lock import LockHeld, acquire

    try:
        return acquire(vault)
    except LockHeld as held:
        raise fail(
            f"{held} (exit with `kill {held.holder.get('pid', '?')}`)", EXIT_LOCKED
        ) from None


def keeper_link(vault: Path) -> tuple[Connection | None, str | None]:
    """A connection to the keeper running on this vault. (None, None): no keeper runs,
    act locally. (None, why): one holds the vault but cannot be reached."""
    from watchkeeper.core.lock import holder

    if holder(vault) is None:
        return None, None
    # Only now: the control client is not needed when no keeper runs.
    from watchkeeper.core.control_client import Connection
    from watchkeeper.core.control_protocol import ControlUnavailable

    try:
        return Connection(vault), None
    except ControlUnavailable as error:
        return None, str(error)


def try_ask(connection: Connection, op: str) -> dict[str, Any] | None:
    """The keeper's answer, or None when it refuses or goes away (then the caller reads
    the vault's files instead). The connection is closed either way."""
    from watchkeeper.core.control_protocol import ControlError

    with connection:
        try:
            return connection.request(op)
        except ControlError:
            return None


def through(connection: Connection) -> str:
    return f"through keeper pid {connection.pid}"


def in_cluster(config: Config, question: Callable[[Any, str, Any], T]) -> T:
    """`question(connection, cluster name, core.cluster.reads)` asked of the database of
    the config's [cluster]; exit 2 naming it (masked) when it cannot be reached. psycopg
    loads here, only in cluster mode."""
    from watchkeeper.core.cluster import reads
    from watchkeeper.core.cluster.dsn import DatabaseUnavailable

    assert config.cluster is not None
    try:
        return reads.answer(config.cluster, lambda conn, name: question(conn, name, reads))
    except DatabaseUnavailable as error:
        raise fail(str(error)) from None


def ask(
    connection: Connection, op: str, timeout: float | None = 10.0, **args: Any
) -> dict[str, Any]:
    """One request to the keeper; a refusal, or a keeper gone mid-request, ends the command
    with its reason (exit 2)."""
    from watchkeeper.core.control_protocol import ControlError

    try:
        return connection.request(op, timeout=timeout, **args)
    except ControlError as error:
        raise fail(f"{error} ({through(connection)})") from None
