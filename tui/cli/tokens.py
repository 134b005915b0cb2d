"""`watchkeeper token add NAME --role read|operate | list | revoke NAME`: the access
tokens of `watchkeeper serve`, kept hashed in Logs/tokens.toml (core/serve/tokens.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from watchkeeper.tui.cli.common import echo, fail, note, vault_flag, vault_path
from watchkeeper.tui.cli.options import JsonOption, VaultOption, command_group

token_app = command_group(
    "Access tokens for `watchkeeper serve` (kept hashed in Logs/tokens.toml)."
)


def register(app: typer.Typer) -> None:
    app.add_typer(token_app, name="token")


@token_app.command()
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Who or what the token is for.")],
    role: Annotated[
        str,
        typer.Option(
            "--role", help="read: see everything; operate: also run, pause, resume, cancel."
        ),
    ] = "read",
    vault: VaultOption = None,
) -> None:
    """Make a token and print it, once: only its hash is kept."""
    from watchkeeper.core.serve.tokens import TokenError, add_token, tokens_path

    path = tokens_path(vault_path(vault_flag(ctx, vault)))
    try:
        secret = add_token(path, name, role)
    except TokenError as error:
        raise fail(str(error)) from None
    except OSError as error:
        raise fail(f"cannot write {path}: {error.strerror or error}") from None
    echo(secret)
    note(f"token {name!r} ({role}) added to {path}; it is shown only now")


@token_app.command(name="list")
def list_tokens(ctx: typer.Context, vault: VaultOption = None, as_json: JsonOption = False) -> None:
    """Each token's name, role and when it was made (never the token)."""
    import json

    from watchkeeper.core.serve.tokens import TokenError, read_tokens, tokens_path

    path = tokens_path(vault_path(vault_flag(ctx, vault)))
    try:
        tokens = read_tokens(path)
    except TokenError as error:
        raise fail(str(error)) from None
    rows = [{"name": t.name, "role": t.role, "created": t.created} for t in tokens.values()]
    if as_json:
        echo(json.dumps(rows))
        return
    if not rows:
        echo(f"no tokens in {path}")
        return
    width = max(len(row["name"]) for row in rows)
    for row in rows:
        echo(f"{row['name']:<{width}}  {row['role']:<7}  {row['created']}")


@token_app.command()
def revoke(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The token to revoke.")],
    vault: VaultOption = None,
) -> None:
    """Remove a token: a server refuses it from its next request on."""
    from watchkeeper.core.serve.tokens import TokenError, revoke_token, tokens_path

    path = tokens_path(vault_path(vault_flag(ctx, vault)))
    try:
        revoke_token(path, name)
    except TokenError as error:
        raise fail(str(error)) from None
    except OSError as error:
        raise fail(f"cannot write {path}: {error.strerror or error}") from None
    echo(f"revoked {name}")
