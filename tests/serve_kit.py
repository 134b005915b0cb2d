"""`watchkeeper serve` as tests run it: the real CLI on 127.0.0.1 port 0 next to a real
keeper daemon, and the plain HTTP clients the tests talk to it with."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI, run_cli, stop_processes, wait_for


@dataclass
class Served:
    process: subprocess.Popen
    url: str
    stderr: Path

    def get(
        self, path: str, token: str | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        return request(self.url + path, token=token, headers=headers)

    def post(self, path: str, body: dict[str, Any], token: str | None = None) -> tuple[int, Any]:
        code, _, data = request(self.url + path, token=token, data=json.dumps(body).encode())
        return code, json.loads(data)


def request(
    url: str,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    data: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    wanted = dict(headers or {})
    if token is not None:
        wanted["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, headers=wanted)
    try:
        with urllib.request.urlopen(req, timeout=20) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def add_token(vault: Path, name: str, role: str) -> str:
    result = run_cli("token", "add", name, "--role", role, "--vault", str(vault))
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


class Servers:
    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.started: list[subprocess.Popen] = []

    def start(self, vault: Path, *options: str) -> Served:
        env = {key: value for key, value in os.environ.items() if key != "WATCHKEEPER_VAULT"}
        stderr = self.scratch / f"serve-{len(self.started)}.err"
        with stderr.open("w") as err:
            process = subprocess.Popen(
                [str(CLI), "serve", "--vault", str(vault), "--bind", "127.0.0.1:0", *options],
                env={**env, "NO_COLOR": "1"},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        self.started.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("serving http://"), stderr.read_text()
        return Served(process, line.split()[1].strip(), stderr)

    def stop_all(self) -> None:
        stop_processes(self.started)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    started = Servers(tmp_path)
    yield started
    started.stop_all()


class EventReader:
    """An SSE stream read line by line (urllib undoes the chunked encoding)."""

    def __init__(self, url: str, token: str, last_event_id: str | None = None, query: str = ""):
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        req = urllib.request.Request(f"{url}/events{query}", headers=headers)
        self.response = urllib.request.urlopen(req, timeout=30)

    def next(self) -> dict[str, Any]:
        """The next event: id, event, data (parsed)."""
        fields: dict[str, Any] = {}
        while True:
            line = self.response.readline().decode()
            if not line:
                raise EOFError("the stream ended")
            line = line.rstrip("\n")
            if not line:
                if "event" in fields:
                    return fields
                continue
            if line.startswith(":"):
                continue
            key, _, value = line.partition(": ")
            fields[key] = json.loads(value) if key == "data" else value

    def until(self, condition: Any, limit: int = 100_000) -> tuple[dict[str, Any], list[dict]]:
        seen = []
        for _ in range(limit):
            event = self.next()
            seen.append(event)
            if condition(event):
                return event, seen
        raise AssertionError(f"no matching event in {limit}")

    def close(self) -> None:
        self.response.close()


def wait_ok(served: Served, path: str, token: str | None, code: int = 200) -> Any:
    return wait_for(lambda: served.get(path, token)[0] == code, timeout=30)
