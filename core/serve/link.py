"""The HTTP server's requests to the keeper: one request a connection on the control
socket, asyncio, under a deadline, so a keeper that hangs makes a probe fail instead of
holding the server up."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from watchkeeper.core.control_protocol import (
    ControlFailed,
    ControlUnavailable,
    decode,
    encode,
    find_socket,
)

# A status line carries every job's view: far more than a request may be.
ANSWER_LIMIT = 64 * 1024 * 1024


async def open_stream(vault: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the running keeper's socket; ControlUnavailable when none runs."""
    path, record = find_socket(vault)
    try:
        return await asyncio.open_unix_connection(str(path), limit=ANSWER_LIMIT)
    except OSError as error:
        pid = record.get("pid", "?")
        raise ControlUnavailable(
            f"keeper pid {pid} does not answer on {path}: {error.strerror or error}"
        ) from None


async def ask(
    vault: Path, op: str, timeout: float = 5.0, role: str | None = None, **args: Any
) -> dict[str, Any]:
    """One request and its answer. ControlUnavailable when no keeper answers within
    `timeout`, ControlFailed with the keeper's error when it says ok: false."""
    message: dict[str, Any] = {"op": op, **args}
    if role is not None:
        message["role"] = role
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await open_stream(vault)
            try:
                writer.write(encode(message))
                await writer.drain()
                line = await reader.readline()
            finally:
                writer.close()
    except TimeoutError:
        raise ControlUnavailable(f"the keeper did not answer {op} within {timeout:g}s") from None
    except (OSError, ValueError) as error:
        raise ControlUnavailable(f"the keeper went away: {error}") from None
    if not line.endswith(b"\n"):
        raise ControlUnavailable("the keeper closed the connection before answering")
    answer = decode(line)
    if not answer.get("ok"):
        raise ControlFailed(str(answer.get("error", "the keeper refused")))
    return answer
