"""`watchkeeper serve` through its real CLI next to a real keeper daemon, talked to with
plain HTTP clients: tokens, roles, the cookie login, probes, metrics, the WebSocket
upgrade's checks, and the keeper's own refusal of a read session's ops."""
# ruff: noqa: F811  (the `servers` fixture is imported, then named by the tests)

from __future__ import annotations

import asyncio
import os
import stat
import tomllib
from pathlib import Path

import aiohttp
import pytest
from conftest import run_cli, wait_for
from prometheus_client.parser import text_string_to_metric_families
from serve_kit import (
    EventReader,
    add_token,
    request,
    servers,  # noqa: F401  (the fixture; tests name it as a parameter)
)

from watchkeeper.core.control_client import Connection
from watchkeeper.core.control_protocol import ControlFailed

JOBS = '[jobs.ok]\ncommand = ["true"]\n'


def test_token_cli_keeps_only_salted_hashes_private_and_revokes(make_vault) -> None:
    vault = make_vault(JOBS)
    secret = add_token(vault, "ops", "operate")
    assert secret.startswith("wk_") and len(secret) > 40
    path = vault / "Logs" / "tokens.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert secret not in text and secret[3:] not in text
    entry = tomllib.loads(text)["tokens"]["ops"]
    assert entry["role"] == "operate" and len(entry["sha256"]) == 64 and entry["salt"]
    add_token(vault, "viewer", "read")
    listed = run_cli("token", "list", "--vault", str(vault))
    assert listed.returncode == 0
    assert "ops" in listed.stdout and "viewer" in listed.stdout and secret not in listed.stdout
    again = run_cli("token", "add", "ops", "--vault", str(vault))
    assert again.returncode == 2 and "exists" in again.stderr
    assert run_cli("token", "add", "x", "--role", "admin", "--vault", str(vault)).returncode == 2
    assert run_cli("token", "add", "../x", "--vault", str(vault)).returncode == 2
    assert run_cli("token", "revoke", "ops", "--vault", str(vault)).returncode == 0
    assert "ops" not in tomllib.loads(path.read_text())["tokens"]
    missing = run_cli("token", "revoke", "ops", "--vault", str(vault))
    assert missing.returncode == 2 and "no token named 'ops'" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_tokens_guard_every_route_but_healthz_and_roles_guard_ops(
    make_vault, daemon, servers
) -> None:
    vault = make_vault(JOBS)
    keeper = daemon(vault)
    operate, read = add_token(vault, "ops", "operate"), add_token(vault, "viewer", "read")
    served = servers.start(vault)

    code, _, body = served.get("/healthz")
    assert code == 200 and f'"pid": {keeper.pid}' in body.decode()
    for path in ("/metrics", "/readyz", "/events", "/api/status", "/", "/ws"):
        assert served.get(path)[0] == 401, path
        assert served.get(path, token="wk_not-a-token")[0] == 401, path
    assert served.get("/api/status", read)[0] == 200

    code, answer = served.post("/api/run", {"job": "ok"}, read)
    assert code == 403 and "operate" in answer["error"]
    code, answer = served.post("/api/pause", {}, read)
    assert code == 403
    code, answer = served.post("/api/run", {"job": "ok"}, operate)
    assert code == 200 and answer["run_id"]
    code, answer = served.post("/api/run", {"job": "nope"}, operate)
    assert code == 409 and "no job 'nope'" in answer["error"]

    # The cookie /login sets stands for the token.
    cookie = _login_cookie(served.url, read)
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    value = cookie.split(";")[0]
    assert served.get("/api/status", headers={"Cookie": value})[0] == 200
    assert request(f"{served.url}/login?token=wk_wrong")[0] == 401

    # Revoked: refused from the next request on, by a server that is already running.
    assert run_cli("token", "revoke", "viewer", "--vault", str(vault)).returncode == 0
    assert served.get("/api/status", read)[0] == 401
    assert served.get("/api/status", headers={"Cookie": value})[0] == 401


def _login_cookie(url: str, token: str) -> str:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=20)
    connection.request("GET", f"/login?token={token}")
    response = connection.getresponse()
    assert response.status == 303 and response.getheader("Location") == "/"
    cookie = response.getheader("Set-Cookie") or ""
    connection.close()
    return cookie


def test_the_keeper_refuses_a_read_session_whatever_it_sends(make_vault, daemon) -> None:
    vault = make_vault(JOBS)
    daemon(vault)
    with Connection(vault, role="read") as reader:
        assert reader.request("status")["status"]["state"] == "RUNNING"
        assert reader.request("resume", preview=True)["plan"] is not None
        for op, args in (("run", {"job": "ok"}), ("pause", {}), ("cancel", {"run_id": "x"})):
            with pytest.raises(ControlFailed, match="read-only session"):
                reader.request(op, **args)
    # A crafted client on that connection cannot lift it: without a role, or claiming operate.
    with Connection(vault) as crafted:
        crafted.request("status", role="read")
        with pytest.raises(ControlFailed, match="read-only session"):
            crafted.request("run", job="ok")
        with pytest.raises(ControlFailed, match="read-only session"):
            crafted.request("run", job="ok", role="operate")
    with Connection(vault) as operator:
        assert operator.request("run", job="ok")["run_id"]


def test_metrics_parse_and_readyz_follows_a_refused_reload(make_vault, daemon, servers) -> None:
    vault = make_vault(JOBS)
    daemon(vault)
    token = add_token(vault, "viewer", "read")
    assert run_cli("run", "ok", "--wait", "--vault", str(vault)).returncode == 0
    served = servers.start(vault)
    wait_for(lambda: (vault / "Logs" / "metrics.prom").exists())
    code, headers, body = served.get("/metrics", token)
    assert code == 200 and headers["Content-Type"].startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(body.decode())}
    assert families["watchkeeper_up"].samples[0].value == 1
    runs = families["watchkeeper_runs"].samples
    assert any(s.labels == {"job_name": "ok", "status": "success"} and s.value >= 1 for s in runs)
    assert "watchkeeper_serve_sse_clients" in families

    assert served.get("/readyz", token)[0] == 200
    config = vault / "watchkeeper.toml"
    config.write_text(JOBS + "[jobs.bad]\ncommand = 7\n")
    wait_for(lambda: served.get("/readyz", token)[0] == 503)
    code, _, body = served.get("/readyz", token)
    assert b"reload refused" in body and b"watchkeeper.toml" in body
    assert served.get("/healthz")[0] == 200  # unready, not dead: the old config runs on
    config.write_text(JOBS)
    wait_for(lambda: served.get("/readyz", token)[0] == 200)


def test_readyz_and_healthz_fail_without_a_keeper_and_metrics_say_down(
    make_vault, daemon, servers
) -> None:
    vault = make_vault(JOBS)
    keeper = daemon(vault)
    token = add_token(vault, "viewer", "read")
    served = servers.start(vault)
    assert served.get("/healthz")[0] == 200
    keeper.terminate()
    keeper.wait(timeout=30)
    assert served.get("/healthz")[0] == 503
    assert served.get("/readyz", token)[0] == 503
    body = served.get("/metrics", token)[2].decode()
    families = {family.name: family for family in text_string_to_metric_families(body)}
    assert families["watchkeeper_up"].samples[0].value == 0


def test_websocket_upgrade_needs_a_token_and_this_origin(make_vault, daemon, servers) -> None:
    vault = make_vault(JOBS)
    daemon(vault)
    token = add_token(vault, "viewer", "read")
    served = servers.start(vault)
    code, _, page = served.get("/", headers={"Cookie": f"wk_token={token}"})
    assert code == 200 and b"/ws" in page

    async def upgrade(origin: str, cookie: str | None) -> int | bytes:
        """The upgrade's refusal, or what the console drew until its footer showed."""
        cookies = {"wk_token": cookie} if cookie else {}
        async with aiohttp.ClientSession(cookies=cookies) as session:
            try:
                async with session.ws_connect(
                    f"{served.url}/ws?width=80&height=24", headers={"Origin": origin}
                ) as socket:
                    got = b""
                    async with asyncio.timeout(30):
                        async for message in socket:
                            if message.type == aiohttp.WSMsgType.BINARY:
                                got += message.data
                            if b"ATTACHED" in got:
                                return got
                    return got
            except aiohttp.WSServerHandshakeError as error:
                return error.status

    assert asyncio.run(upgrade(served.url, None)) == 401
    assert asyncio.run(upgrade("http://evil.example", token)) == 403
    shown = asyncio.run(upgrade(served.url, token))
    assert isinstance(shown, bytes) and b"ATTACHED" in shown  # attached, never the owner


def test_a_bind_beyond_loopback_warns_and_a_bad_bind_is_a_usage_error(
    make_vault, daemon, servers
) -> None:
    vault = make_vault(JOBS)
    daemon(vault)
    bad = run_cli("serve", "--vault", str(vault), "--bind", "nowhere")
    assert bad.returncode == 2 and "HOST:PORT" in bad.stderr
    served = servers.start(vault, "--bind", "0.0.0.0:0")
    wait_for(lambda: "WARNING" in served.stderr.read_text())
    text = served.stderr.read_text()
    assert "plain HTTP" in text and "TLS" in text
    assert os.environ.get("WATCHKEEPER_VAULT") != str(vault)


def test_serve_needs_a_vault(tmp_path: Path) -> None:
    result = run_cli("serve", cwd=tmp_path, env={"HOME": str(tmp_path)})
    assert result.returncode == 2 and "watchkeeper.toml" in result.stderr


def test_events_stream_and_resume_after_a_dropped_connection(make_vault, daemon, servers) -> None:
    vault = make_vault(JOBS)
    daemon(vault)
    token = add_token(vault, "viewer", "read")
    served = servers.start(vault)
    stream = EventReader(served.url, token)
    first = stream.next()
    assert first["event"] == "snapshot" and first["data"]["state"] == "RUNNING"
    assert run_cli("run", "ok", "--wait", "--vault", str(vault)).returncode == 0
    finished, seen = stream.until(lambda event: event["event"] == "run_finished")
    ids = [event["id"] for event in seen]
    assert len(set(ids)) == len(ids) and finished["data"]["taskId"] == "ok"
    stream.close()  # dropped; meanwhile another run
    assert run_cli("run", "ok", "--wait", "--vault", str(vault)).returncode == 0
    resumed = EventReader(served.url, token, last_event_id=finished["id"])
    event, missed = resumed.until(lambda event: event["event"] == "run_finished")
    assert missed[0]["event"] != "snapshot"  # what was missed, not a fresh start
    assert event["data"]["id"] != finished["data"]["id"]
    resumed.close()
    lost = EventReader(served.url, token, last_event_id="someone-else-1")
    event = lost.next()
    assert event["event"] == "resync" and event["data"]["snapshot"]["state"] == "RUNNING"
    lost.close()
