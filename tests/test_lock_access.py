"""Another local user and the keeper's Logs/: a clear message and exit 2 where they may
not go, the read-only commands where log_mode lets their group read; never a traceback.

Run as a real unprivileged user (nobody), so the tests need root to switch to it.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CLI, run_cli

from watchkeeper.core.vault import ensure_layout


def nobody() -> tuple[int, int]:
    try:
        user = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' to run as")
    return user.pw_uid, user.pw_gid


def as_nobody(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    uid, gid = nobody()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NO_COLOR": "1", "HOME": str(cwd)}
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to run as another user")
    switch = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
    return subprocess.run(
        [*switch, str(CLI), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder another user can reach (pytest's tmp_path is private to root)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a command as another user")
    base = Path(tempfile.mkdtemp(prefix="wk-access-"))
    try:
        base.chmod(0o755)
        probe = as_nobody("--help", cwd=base)
        if probe.returncode != 0:
            pytest.skip(f"watchkeeper does not run as nobody here: {probe.stderr[-300:]}")
        yield base
    finally:
        shutil.rmtree(base)


def vault_in(base: Path, keeper: str = "") -> Path:
    vault = base / "vault"
    ensure_layout(vault)
    (vault / "watchkeeper.toml").write_text(
        textwrap.dedent(
            f"""
            [keeper]
            {keeper}
            [jobs.hello]
            command = ["echo", "hello"]
            every = "1h"
            """
        )
    )
    return vault


def refused(done: subprocess.CompletedProcess, doing: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    assert f"watchkeeper: cannot {doing} " in done.stderr
    assert "Permission denied" in done.stderr


def test_a_user_shut_out_of_logs_gets_a_message_not_a_traceback(shared: Path) -> None:
    vault = vault_in(shared)
    assert run_cli("--once", "--vault", str(vault)).returncode == 0  # the lock file exists
    assert (vault / "Logs").stat().st_mode & 0o777 == 0o700

    for args in (["--status"], ["pause"], ["run", "hello"]):
        done = as_nobody(*args, "--vault", str(vault), cwd=shared)
        refused(done, "read the lock")
        assert "Logs/ is private to root" in done.stderr


def test_a_group_let_in_by_log_mode_reads_but_cannot_write(shared: Path) -> None:
    vault = vault_in(shared, keeper='log_mode = "0750"')
    assert run_cli("--once", "--vault", str(vault)).returncode == 0
    group = grp.getgrgid(nobody()[1]).gr_gid
    for folder, _, files in os.walk(vault / "Logs"):
        for path in [folder, *(os.path.join(folder, name) for name in files)]:
            os.chown(path, -1, group)  # the operator's chgrp for the reading group

    status = as_nobody("--status", "--json", "--vault", str(vault), cwd=shared)
    assert "Traceback" not in status.stderr
    assert status.returncode in (0, 4), status.stderr  # 4: no keeper running
    assert '"running": false' in status.stdout
    history = as_nobody("history", "--vault", str(vault), cwd=shared)
    assert history.returncode == 0 and "hello" in history.stdout, history.stderr

    for args, doing in ((["pause"], "write"), (["run", "hello"], "take the lock")):
        done = as_nobody(*args, "--vault", str(vault), cwd=shared)
        refused(done, doing)
        assert "Logs/ belongs to root; this user may read it, not write it" in done.stderr
