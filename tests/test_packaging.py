"""The wheel alone gives a working `watchkeeper`: core/, tui/, themes/ and the demo ship,
as `watchkeeper.core`, `watchkeeper.tui` and `watchkeeper.themes`, never as top-level
packages another distribution's `core` could collide with."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_installs_a_working_command(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(dist.glob("watchkeeper-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # Dependencies come from the test venv (no network needed); watchkeeper itself only
    # from the wheel: a plain path entry does not run the editable install's finder.
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
        check=True,
        capture_output=True,
    )
    env = {key: value for key, value in os.environ.items() if key != "WATCHKEEPER_VAULT"}
    where = subprocess.run(
        [
            str(python),
            "-c",
            "import watchkeeper.core as c, watchkeeper.tui as t, watchkeeper.themes as h;"
            "print(c.__file__, t.__file__, h.__file__)",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env=env,
    ).stdout.split()
    assert all(path.startswith(f"{site}/watchkeeper/") for path in where), where
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
    assert tops == {"watchkeeper", wheel.name.split("-py3")[0] + ".dist-info"}, tops
    for top in ("core", "tui", "themes"):
        found = subprocess.run(
            [str(python), "-c", f"import {top}"], capture_output=True, cwd=tmp_path, env=env
        )
        assert found.returncode == 1 and b"ModuleNotFoundError" in found.stderr, top
    command = venv / "bin" / "watchkeeper"
    vault = tmp_path / "vault"
    subprocess.run(
        [str(command), "init", str(vault)], check=True, capture_output=True, cwd=tmp_path, env=env
    )
    once = subprocess.run(
        [str(command), "--once", "--vault", str(vault)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert once.returncode == 0, once.stdout + once.stderr
    # Each of the demo's five jobs ran (some twice, as notes arrive), and none failed.
    ran = {line.split()[2] for line in once.stdout.splitlines() if line.startswith("✔ success")}
    demo = {"vault-watcher", "task-planner", "plan-worker", "archiver", "sample-notes"}
    assert ran == demo, once.stdout
    assert "✘" not in once.stdout
