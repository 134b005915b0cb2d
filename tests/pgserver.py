"""A real PostgreSQL for the cluster tests: one server per test process (xdist worker),
on a Unix socket in a private temp dir, a fresh database per test.

Debian's server binaries (/usr/lib/postgresql/N/bin) are used; .ci/run installs them on a
fresh machine. initdb refuses to run as root, so as root the server runs as the
`postgres` system user (runuser), in a directory that user owns."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def server_binaries() -> Path:
    """The newest installed PostgreSQL's bin/ (Debian keeps each major version apart)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name)
    )
    if found:
        return found[-1].parent
    on_path = shutil.which("pg_ctl")
    if on_path is None:
        raise RuntimeError("no PostgreSQL server here: .ci/run installs postgresql-15")
    return Path(on_path).parent


def _as_server_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@dataclass
class PgServer:
    directory: Path
    bin: Path

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.directory}"

    def ctl(self, *args: str) -> None:
        argv = [str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.directory / "log")]
        subprocess.run(_as_server_user([*argv, *args]), check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        # No TCP at all: the tests never leave this machine's Unix sockets.
        options = f"-k {self.directory} -c listen_addresses='' -c fsync=off -c max_connections=300"
        self.ctl("-w", "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        self.ctl("-w", "-m", mode, "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [str(self.bin / "psql"), "-XAtq", "-d", self.dsn(database), "-c", sql],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return result.stdout.strip()

    def new_database(self) -> str:
        name = f"wk_{uuid.uuid4().hex[:12]}"
        self.psql(f"CREATE DATABASE {name}")
        return self.dsn(name)


def start_server() -> PgServer:
    directory = Path(tempfile.mkdtemp(prefix="wk-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    server = PgServer(directory, server_binaries())
    initdb = [str(server.bin / "initdb"), "-D", str(server.data), "-A", "trust", "-U", "postgres"]
    subprocess.run(
        _as_server_user([*initdb, "--no-sync", "-E", "UTF8"]),
        check=True,
        capture_output=True,
        timeout=120,
    )
    server.start()
    return server


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = start_server()
    try:
        yield server
    finally:
        # immediate: the suite is over, nothing in these databases is kept.
        subprocess.run(
            _as_server_user(
                [str(server.bin / "pg_ctl"), "-D", str(server.data), "-m", "immediate", "stop"]
            ),
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture
def pg_dsn(pg_server: PgServer) -> str:
    """A libpq URL of an empty database of its own for this test."""
    return pg_server.new_database()
