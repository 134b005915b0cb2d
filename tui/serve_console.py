"""The console in a browser for `watchkeeper serve`: `/` (our page, serve_page/console.html,
around textual-serve's terminal), `/ws` (the WebSocket each tab drives its own console
through) and `/static` (textual-serve's script, styles and font).

Each tab gets a console process of its own, attached to the running keeper and never
its owner (`watchkeeper attach`), with `--read-only` for a read token: that console has
no run/pause/cancel keys and its requests carry the read role, so the keeper refuses
them whatever the browser sends. The WebSocket upgrade needs the token (the server's
middleware) and an Origin naming this server, so another site's page cannot drive it
with the operator's cookie.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
import textual_serve
from aiohttp import WSMsgType, web
from textual_serve.app_service import AppService
from textual_serve.download_manager import DownloadManager

from watchkeeper.core.serve.auth import ROLE_KEY, same_origin, secure_request

PACKAGE = Path(textual_serve.__file__).resolve().parent
# Our own page rather than textual-serve's, which loads its font from Google's servers: an
# operator's console reaches nothing but this server (and works offline).
PAGE = Path(__file__).resolve().parent / "serve_page"
log = logging.getLogger("watchkeeper.serve")


def attach_command(vault: Path, role: str) -> str:
    """The shell command textual-serve starts for one tab (it runs it through a shell)."""
    argv = [sys.executable, "-m", "watchkeeper.tui.cli.main", "attach", "--vault", str(vault)]
    if role == "read":
        argv.append("--read-only")
    return shlex.join(argv)


def _size(value: str | None, default: int) -> int:
    try:
        return max(10, min(1000, int(value or default)))
    except ValueError:
        return default


async def _close(socket: web.WebSocketResponse) -> None:
    await socket.close()


class BrowserConsole:
    def __init__(self, vault: Path, command_for: Callable[[Path, str], str] = attach_command):
        self.vault = vault
        self.command_for = command_for
        self.downloads = DownloadManager()

    def install(self, app: web.Application) -> None:
        aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(PAGE))
        app.add_routes(
            [
                web.get("/", self.index),
                web.get("/ws", self.websocket),
                web.static("/static", PACKAGE / "static"),
            ]
        )

    async def index(self, request: web.Request) -> web.Response:
        scheme = "wss" if secure_request(request) else "ws"
        context = {
            "font_size": _size(request.query.get("fontsize"), 16),
            "websocket_url": f"{scheme}://{request.host}/ws",
            "title": f"watchkeeper · {self.vault.name}",
        }
        response = aiohttp_jinja2.render_template("console.html", request, context)
        response.headers["Cache-Control"] = "no-store"
        return response

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        if not same_origin(request):
            raise web.HTTPForbidden(text="foreign Origin: this console is not for another site\n")
        role = request[ROLE_KEY]
        socket = web.WebSocketResponse(heartbeat=15)
        await socket.prepare(request)
        service = AppService(
            self.command_for(self.vault, role),
            write_bytes=socket.send_bytes,
            write_str=socket.send_str,
            close=lambda: _close(socket),
            download_manager=self.downloads,
        )
        await service.start(
            _size(request.query.get("width"), 80), _size(request.query.get("height"), 24)
        )
        try:
            await self._relay(socket, service)
        finally:
            await service.stop()
        return socket

    async def _relay(self, socket: web.WebSocketResponse, service: AppService) -> None:
        """The browser's keys and resizes to the console (textual-serve's protocol);
        anything malformed is ignored, never fatal."""
        async for message in socket:
            if message.type != WSMsgType.TEXT:
                continue
            try:
                envelope: Any = json.loads(message.data)
                kind, data = envelope[0], envelope[1] if len(envelope) > 1 else None
            except (ValueError, TypeError, IndexError, KeyError):
                continue
            if kind == "stdin" and isinstance(data, str):
                await service.send_bytes(data.encode("utf-8", "replace"))
            elif kind == "resize" and isinstance(data, dict):
                await service.set_terminal_size(
                    _size(str(data.get("width")), 80), _size(str(data.get("height")), 24)
                )
            elif kind == "ping":
                await socket.send_json(["pong", data])
            elif kind == "blur":
                await service.blur()
            elif kind == "focus":
                await service.focus()
