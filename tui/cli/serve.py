"""`watchkeeper serve [--bind HOST:PORT] [--read-only]`: the console in a browser, the
keeper's events as SSE, /metrics, /healthz and /readyz, next to a running keeper
(core/serve/, tui/serve_console.py). And `watchkeeper attach [--read-only]`: the console
attached to the running keeper, never its owner, which serve opens in each browser tab."""

from __future__ import annotations

from typing import Annotated

import typer

from watchkeeper.tui.cli.common import (
    EXIT_LOCKED,
    echo,
    fail,
    locate_vault,
    note,
    open_config,
    vault_flag,
)
from watchkeeper.tui.cli.options import VaultOption

DEFAULT_BIND = "127.0.0.1:8765"


def register(app: typer.Typer) -> None:
    app.command(name="serve")(serve)
    app.command(name="attach", hidden=True)(attach)


ReadOnlyOption = Annotated[
    bool,
    typer.Option(
        "--read-only", help="Every session read-only, whatever its token: no run/pause/cancel."
    ),
]


def serve(
    ctx: typer.Context,
    vault: VaultOption = None,
    bind: Annotated[
        str,
        typer.Option("--bind", help="HOST:PORT to listen on (port 0: any free one)."),
    ] = DEFAULT_BIND,
    read_only: ReadOnlyOption = False,
    sse_stall: Annotated[
        float,
        typer.Option(
            "--sse-stall",
            min=0.1,
            max=60.0,
            hidden=True,  # tests: a stalled client dropped within a second
            help="Seconds an SSE client may take to accept a write before it is dropped.",
        ),
    ] = 5.0,
) -> None:
    """Serve the console, events, metrics and probes over HTTP, next to a running keeper."""
    from watchkeeper.core.config import CONFIG_NAME, ConfigError, load_config
    from watchkeeper.core.serve.run import exposure_warning, parse_bind

    try:
        host, port = parse_bind(bind)
    except ValueError as error:
        raise fail(str(error)) from None
    root, _ = locate_vault(vault_flag(ctx, vault))
    config_path = root / CONFIG_NAME
    database = None
    try:
        config = load_config(config_path)
    except ConfigError as error:
        # The running keeper keeps its config when a reload is refused: serve it all the
        # same, unready until the file is good again.
        note(f"{len(error.issues)} error(s) in {config_path}: /readyz says so until fixed")
    else:
        root = config.vault
        if config.cluster is not None:
            database = config.cluster.database
    warning = exposure_warning(host)
    if warning is not None:
        note(f"WARNING: {warning}")
    from watchkeeper.core.control_protocol import ControlUnavailable, find_socket

    try:
        find_socket(root)
    except ControlUnavailable as error:
        note(f"{error}: /healthz answers 503 until a keeper runs")
    import asyncio

    from watchkeeper.core.serve.app import Settings, make_app
    from watchkeeper.core.serve.run import serve as run_server
    from watchkeeper.core.serve.tokens import tokens_path
    from watchkeeper.tui.serve_console import BrowserConsole

    if not tokens_path(root).exists():
        note("no tokens yet: make one with `watchkeeper token add NAME --role read|operate`")
    settings = Settings(root, config_path, read_only, database, stall=sse_stall)
    app = make_app(settings, BrowserConsole(root).install, log=note)
    try:
        asyncio.run(run_server(app, host, port, echo))
    except OSError as error:
        raise fail(f"cannot listen on {bind}: {error.strerror or error}") from None


def attach(
    ctx: typer.Context,
    vault: VaultOption = None,
    read_only: ReadOnlyOption = False,
) -> None:
    """The console attached to the running keeper; never starts one of its own."""
    from watchkeeper.core.control_protocol import ControlUnavailable
    from watchkeeper.tui.attached import AttachedConsole

    config = open_config(vault_flag(ctx, vault))
    try:
        app = AttachedConsole(config, read_only=read_only)
    except ControlUnavailable as error:
        raise fail(f"cannot attach: {error}", EXIT_LOCKED) from None
    code = app.run()
    raise SystemExit(code if isinstance(code, int) else 0)
