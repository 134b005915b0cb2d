"""The aiohttp application of `watchkeeper serve`, without the console: probes, metrics,
events, login, and a small JSON API for the keeper's ops.

    GET  /healthz /readyz /metrics /events /login?token= /logout /api/status
    POST /api/run {"job"}  /api/pause {"job"?}  /api/resume {"job"?}  /api/cancel {"run_id"}

An op that changes something needs an `operate` token (403 otherwise, and with
--read-only for everyone); the request goes to the keeper marked with the session's role,
so the keeper refuses it too should this check ever be bypassed. Whoever adds the
console (tui/serve_console.py) passes `extend`, called with the application before it
starts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from watchkeeper.core.control_protocol import ControlError, ControlFailed, RequestError
from watchkeeper.core.control_roles import check as check_role
from watchkeeper.core.serve import auth, probes
from watchkeeper.core.serve.hub import STALL, EventHub
from watchkeeper.core.serve.link import ask
from watchkeeper.core.serve.sse import stream
from watchkeeper.core.serve.tokens import TokenStore, tokens_path

OPS = ("run", "pause", "resume", "cancel", "approve", "dismiss")


@dataclass(frozen=True)
class Settings:
    vault: Path
    config_path: Path
    read_only: bool = False
    database: str | None = None  # cluster mode: the database /readyz checks
    stall: float = STALL  # an SSE client taking nothing this long is dropped


@dataclass
class Parts:
    settings: Settings
    hub: EventHub
    watch: probes.ConfigWatch


PARTS: web.AppKey[Parts] = web.AppKey("parts", Parts)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=_dumps)


def _dumps(body: Any) -> str:
    import json

    return json.dumps(body, default=str) + "\n"


async def healthz(request: web.Request) -> web.Response:
    ok, body = await probes.health(request.app[PARTS].settings.vault)
    return _json(body, 200 if ok else 503)


async def readyz(request: web.Request) -> web.Response:
    parts = request.app[PARTS]
    ok, body = await probes.ready(parts.settings.vault, parts.watch, parts.settings.database)
    return _json(body, 200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    parts = request.app[PARTS]
    up, _ = await probes.health(parts.settings.vault)
    hub = parts.hub
    text = probes.keeper_metrics(parts.settings.vault, up)
    own = [
        ("serve_sse_clients", "gauge", "SSE clients connected now.", len(hub.clients)),
        (
            "serve_sse_dropped_total",
            "counter",
            "SSE clients dropped for taking nothing within the stall limit.",
            hub.dropped_total,
        ),
        (
            "serve_sse_resyncs_total",
            "counter",
            "Backlogs of SSE clients too far behind replaced by a resync event.",
            hub.resyncs_total,
        ),
        ("serve_events_total", "counter", "Keeper events fanned out.", hub.events_total),
    ]
    for name, kind, help_text, value in own:
        text += f"# HELP watchkeeper_{name} {help_text}\n# TYPE watchkeeper_{name} {kind}\n"
        text += f"watchkeeper_{name} {value}\n"
    return web.Response(
        text=text,
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


async def events(request: web.Request) -> web.StreamResponse:
    parts = request.app[PARTS]
    return await stream(request, parts.hub, parts.settings.stall)


async def logout(request: web.Request) -> web.Response:
    response = web.Response(text="logged out\n")
    response.del_cookie(auth.COOKIE, path="/")
    return response


async def status(request: web.Request) -> web.Response:
    return await _forward(request, "status", {})


async def op(request: web.Request) -> web.Response:
    name = request.match_info["op"]
    if name not in OPS:
        raise web.HTTPNotFound(text=f"no op {name!r}; ops: {', '.join(OPS)}\n")
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError:
        return _json({"ok": False, "error": "the body must be a JSON object"}, 400)
    if not isinstance(body, dict):
        return _json({"ok": False, "error": "the body must be a JSON object"}, 400)
    args = {key: value for key, value in body.items() if key not in ("op", "role")}
    return await _forward(request, name, args)


async def _forward(request: web.Request, name: str, args: dict[str, Any]) -> web.Response:
    role = request[auth.ROLE_KEY]
    try:
        check_role(role, {"op": name, **args})  # type: ignore[arg-type]
    except RequestError as error:
        return _json({"ok": False, "error": f"{error} (a read token)"}, 403)
    try:
        answer = await ask(request.app[PARTS].settings.vault, name, role=role, **args)
    except ControlFailed as error:
        return _json({"ok": False, "error": str(error)}, 409)
    except ControlError as error:
        return _json({"ok": False, "error": str(error)}, 503)
    return _json(answer)


def make_app(
    settings: Settings,
    extend: Callable[[web.Application], None] | None = None,
    log: Callable[[str], None] = print,
) -> web.Application:
    store = TokenStore(tokens_path(settings.vault))
    watch = probes.ConfigWatch(settings.config_path)
    hub = EventHub(settings.vault, on_event=watch.on_event, log=log)
    app = web.Application(middlewares=[auth.middleware(store, settings.read_only)])
    app[PARTS] = Parts(settings, hub, watch)
    app[auth.STORE_KEY] = store
    app.add_routes(
        [
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
            web.get("/metrics", metrics),
            web.get("/events", events),
            web.get("/login", auth.login),
            web.get("/logout", logout),
            web.get("/api/status", status),
            web.post("/api/{op}", op),
        ]
    )

    async def started(app: web.Application) -> None:
        import asyncio

        await asyncio.to_thread(watch.check_file)
        hub.start()

    async def stopping(app: web.Application) -> None:
        with contextlib.suppress(Exception):
            await hub.close()

    app.on_startup.append(started)
    app.on_shutdown.append(stopping)
    if extend is not None:
        extend(app)
    return app
