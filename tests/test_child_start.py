"""Starting a child directly through fork_exec behaves as Popen does: group, cwd, env,
descriptors, and the errors a child reports before it could exec."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from watchkeeper.core import child_start
from watchkeeper.core.child_start import encoded_env, start_child


def run_child(
    argv: list[str], tmp_path: Path, env: dict[str, str] | None = None, **kwargs: object
) -> tuple[int, bytes]:
    read_end, write_end = os.pipe()
    stdin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        child = start_child(
            argv, dict(os.environ) if env is None else env, tmp_path, stdin, write_end, **kwargs
        )  # type: ignore[arg-type]
    finally:
        os.close(write_end)
        os.close(stdin)
    with os.fdopen(read_end, "rb") as pipe:
        output = pipe.read()
    _, status = os.waitpid(child.pid, 0)
    return os.waitstatus_to_exitcode(status), output


def test_this_python_starts_children_directly() -> None:
    # The fast way is taken on the Python the project is tested with: a Python whose
    # fork_exec call changed shows up here, not as a slower keeper nobody notices.
    assert child_start.direct(), f"fork_exec's call changed in Python {sys.version}"


def test_the_child_leads_its_own_group_in_cwd_with_the_env_and_only_stdio(
    tmp_path: Path,
) -> None:
    leaked = os.open(os.devnull, os.O_RDONLY)  # inheritable: close_fds must still close it
    try:
        code = (
            "import os, sys; print(os.getpgid(0) == os.getpid(), os.getcwd(), "
            "os.environ['WK_TEST'], sorted(int(f) for f in os.listdir('/proc/self/fd')), "
            "sys.stdin.read() == ''); print('to stderr', file=sys.stderr)"
        )
        status, output = run_child(
            [sys.executable, "-c", code], tmp_path, {**os.environ, "WK_TEST": "värde ✓"}
        )
    finally:
        os.close(leaked)
    lines = output.decode().splitlines()
    assert status == 0
    assert lines[0] == f"True {tmp_path} värde ✓ [0, 1, 2, 3] True"  # 3: listdir's own
    assert lines[1] == "to stderr"


def test_a_program_is_found_on_the_runs_own_path(tmp_path: Path) -> None:
    tool = tmp_path / "bin" / "wk-only-here"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\necho found it\n")
    tool.chmod(0o755)
    status, output = run_child(["wk-only-here"], tmp_path, {"PATH": f"/nowhere:{tool.parent}"})
    assert (status, output) == (0, b"found it\n")


def test_errors_are_the_ones_popen_raises(tmp_path: Path) -> None:
    cases: list[tuple[list[str], Path]] = [
        (["wk-no-such-program"], tmp_path),
        ([str(tmp_path / "missing" / "tool")], tmp_path),
        (["/etc/hostname"], tmp_path),  # not executable
        (["true"], tmp_path / "no-such-dir"),
    ]
    for argv, cwd in cases:
        with pytest.raises(OSError) as popen:
            subprocess.Popen(argv, cwd=cwd, env=dict(os.environ), process_group=0)
        with pytest.raises(OSError) as direct:
            read_end, write_end = os.pipe()
            try:
                start_child(argv, dict(os.environ), cwd, 0, write_end)
            finally:
                os.close(read_end)
                os.close(write_end)
        assert type(direct.value) is type(popen.value)
        assert (direct.value.errno, direct.value.strerror, direct.value.filename) == (
            popen.value.errno,
            popen.value.strerror,
            popen.value.filename,
        )


def test_a_failing_preexec_is_reported_as_popen_does(tmp_path: Path) -> None:
    def refuse() -> None:
        raise RuntimeError("no")

    read_end, write_end = os.pipe()
    try:
        with pytest.raises(subprocess.SubprocessError, match="preexec_fn"):
            start_child(["true"], dict(os.environ), tmp_path, 0, write_end, refuse)
    finally:
        os.close(read_end)
        os.close(write_end)


def test_the_environment_is_encoded_as_exec_takes_it() -> None:
    env = {"A": "1", "PATH": "/bin", "LONE": "\udcff", "EMPTY": ""}
    assert encoded_env(env) == [b"A=1", b"PATH=/bin", b"LONE=\xff", b"EMPTY="]
    assert encoded_env({}) == []
    with pytest.raises(ValueError, match="illegal environment variable name"):
        encoded_env({"A=B": "1"})
    with pytest.raises(ValueError, match="embedded null byte"):
        encoded_env({"A": "1\x002"})
