"""Run the server until SIGINT or SIGTERM: bind, say where (the real port when 0 was
asked for), serve."""

from __future__ import annotations

import asyncio
import ipaddress
import signal
from collections.abc import Callable

from aiohttp import web


def parse_bind(text: str) -> tuple[str, int]:
    """HOST:PORT ([v6]:PORT for IPv6); ValueError naming what is wrong."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"--bind {text!r}: expected HOST:PORT, like 127.0.0.1:8765")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--bind {text!r}: the port must be 0..65535")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def exposure_warning(host: str) -> str | None:
    if is_loopback(host):
        return None
    return (
        f"serving on {host}, beyond this host, over plain HTTP: tokens, cookies and the "
        "console travel unencrypted and anyone on the network can try them. Put a TLS "
        "reverse proxy in front (and bind to 127.0.0.1 behind it)."
    )


async def serve(app: web.Application, host: str, port: int, say: Callable[[str], None]) -> None:
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, shutdown_timeout=2.0)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    for address in runner.addresses:
        shown = f"[{address[0]}]" if ":" in address[0] else address[0]
        say(f"serving http://{shown}:{address[1]}")
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
