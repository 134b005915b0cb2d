"""The quick path: the commands shell hooks and health checks call often (`--status`,
`jobs`, `history`, `stats`, `pause`, `resume`, `run`, `cancel`) parsed here and run
without typer, rich, pydantic or asyncio, in a few tens of milliseconds.

Only what is plainly right is taken: the options these commands have, each at most once,
in the places click accepts them. Anything else (-h, --help, another command, a mistake,
anything unusual) returns None and goes to the typer app, which gives the same answers,
help and errors as ever (tests/test_cli_fast.py holds the two to the same outputs)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# An option's value: a string, or a whole number of at least 1 (`--limit`, as typer's
# min=1); None when typer would have its say on it.
Convert = Callable[[str], Any]


def _at_least_one(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() and int(text) >= 1 else None


@dataclass(frozen=True)
class Grammar:
    """What one level of a quick command's line may hold."""

    flags: dict[str, str] = field(default_factory=dict)  # --flag -> its name
    values: dict[str, tuple[str, Convert]] = field(default_factory=dict)  # --opt -> name, type
    arguments: tuple[str, ...] = ()  # positional names, in order
    repeated: dict[str, str] = field(default_factory=dict)  # -p (many times) -> list's name
    required: int = 0  # how many of them must be given


VAULT: dict[str, tuple[str, Convert]] = {"--vault": ("vault", Path)}
TOP = Grammar(flags={"--status": "status", "--json": "as_json"}, values=VAULT)
COMMANDS = {
    "jobs": Grammar(flags={"--json": "as_json"}, values=VAULT),
    "history": Grammar(
        flags={"--json": "as_json"},
        values={
            **VAULT,
            "--job": ("job", str),
            "--status": ("status", str),
            "--since": ("since", str),
            "--limit": ("limit", _at_least_one),
        },
    ),
    "stats": Grammar(flags={"--json": "as_json"}, values={**VAULT, "--since": ("since", str)}),
    "pause": Grammar(values=VAULT, arguments=("job",)),
    "resume": Grammar(
        flags={"--preview": "preview", "--skip-missed": "skip_missed"},
        values=VAULT,
        arguments=("job",),
    ),
    "run": Grammar(
        flags={"--wait": "wait", "--follow": "follow", "-f": "follow"},
        values=VAULT,
        arguments=("job",),
        required=1,
        repeated={"-p": "param", "--param": "param"},
    ),
    "cancel": Grammar(values=VAULT, arguments=("run_id",), required=1),
}


class Unsure(Exception):
    """Not plainly one of the quick commands: typer decides."""


def _parse(
    args: list[str], grammar: Grammar, command_follows: bool
) -> tuple[dict[str, Any], list[str]]:
    """Options and arguments of one level of the command line, and what is left after
    the command name when `command_follows` (click stops at it, as here)."""
    found: dict[str, Any] = {}
    positional: list[str] = []
    value: Any
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "-":
            raise Unsure(arg)  # stdin, to click: no quick command takes it
        if not arg.startswith("-"):
            if command_follows:
                return found, [arg, *rest]
            positional.append(arg)
            continue
        name, equals, inline = arg.partition("=")
        if arg in grammar.repeated:
            # Its value is NAME=VALUE, so no inline `--param=` form is taken here.
            if not rest or rest[0].startswith("-"):
                raise Unsure(arg)
            found.setdefault(grammar.repeated[arg], []).append(rest.pop(0))
            continue
        if arg in grammar.flags:
            key, value = grammar.flags[arg], True
        elif name in grammar.values:
            key, convert = grammar.values[name]
            if equals:
                text = inline
            elif rest and not rest[0].startswith("-"):
                text = rest.pop(0)
            else:
                raise Unsure(arg)
            value = convert(text) if text else None
            if value is None:
                raise Unsure(arg)
        else:
            raise Unsure(arg)  # -h, --help, --, an option of another command, a typo
        if key in found:
            raise Unsure(arg)
        found[key] = value
    if not grammar.required <= len(positional) <= len(grammar.arguments):
        raise Unsure(positional)
    found.update(zip(grammar.arguments, positional, strict=False))
    return found, []


def _bare(options: dict[str, Any]) -> int | None:
    """No command: --status, or the status a pipe gets; the console is typer's."""
    from watchkeeper.tui.cli import status as cli_status
    from watchkeeper.tui.cli.common import open_config

    if not options.get("status") and sys.stdout.isatty():
        return None
    code = cli_status.status(open_config(options.get("vault"), demo=True), "as_json" in options)
    # Only the explicit --status is a health check: a pipe's status exits 0 either way.
    return code if options.get("status") else 0


def _command(name: str, options: dict[str, Any]) -> None:
    """Each command's work, imported only for it: the module of `run` is not needed by
    `jobs`, nor asyncio by anything but a local run."""
    vault = options.pop("vault", None)
    if name == "jobs":
        from watchkeeper.tui.cli import status as cli_status

        cli_status.jobs(vault, **options)
    elif name == "history":
        from watchkeeper.tui.cli import history as cli_history

        cli_history.history(vault, **options)
    elif name == "stats":
        from watchkeeper.tui.cli import history as cli_history

        cli_history.stats(vault, **options)
    elif name == "pause":
        from watchkeeper.tui.cli import ops as cli_ops

        cli_ops.pause(vault, **options)
    elif name == "resume":
        from watchkeeper.tui.cli import ops as cli_ops

        cli_ops.resume(vault, **options)
    elif name == "run":
        from watchkeeper.tui.cli import run as cli_run

        cli_run.run(vault, **options)
    else:
        from watchkeeper.tui.cli import run as cli_run

        cli_run.cancel(vault, **options)


def quick(argv: list[str]) -> int | None:
    """Run `argv` (without the program name) if it is one of the quick commands and
    return its exit code; None when typer should handle it."""
    try:
        top, rest = _parse(argv, TOP, command_follows=True)
        if not rest:
            return _bare(top)
        name, args = rest[0], rest[1:]
        if name not in COMMANDS or set(top) - {"vault"}:
            return None  # another command, or --status/--json before one: typer says so
        options, _ = _parse(args, COMMANDS[name], command_follows=False)
    except Unsure:
        return None
    # --vault after the command, else before it (`watchkeeper --vault V jobs`).
    options.setdefault("vault", top.get("vault"))
    _command(name, options)
    return 0
