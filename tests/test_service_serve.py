"""`watchkeeper service install --serve`: a systemd user unit for `watchkeeper serve`,
through the real CLI against test_service's fake systemctl, and checked by systemd."""
# ruff: noqa: F811  (the `systemd` fixture is imported, then named by the tests)

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import CLI
from test_service import (
    CONFIG,
    printed_unit,
    service_cli,
    systemd,  # noqa: F401  (the fixture)
)


def serve_name(vault: Path) -> str:
    digest = hashlib.sha256(str(vault.resolve()).encode()).hexdigest()[:8]
    return f"watchkeeper-serve-{vault.name}-{digest}.service"


def test_install_serve_writes_its_own_unit_and_uninstall_removes_it(make_vault, systemd) -> None:
    vault = make_vault(CONFIG)
    name, env = serve_name(vault), systemd.env(vault)
    result = service_cli(
        "install", "--serve", "--bind", "0.0.0.0:8765", "--read-only", "--vault", str(vault),
        env=env,
    )
    assert result.returncode == 0, result.stderr
    unit = (systemd.units / name).read_text().splitlines()
    real = vault.resolve()
    assert f"ExecStart={CLI} serve --vault {real} --bind 0.0.0.0:8765 --read-only" in unit
    keeper_digest = name.rsplit("-", 1)[1]
    assert f"After=watchkeeper-{vault.name}-{keeper_digest}" in unit  # the keeper's unit
    assert systemd.calls()[-2:] == [
        "--user daemon-reload [absent]",  # the fake's [present] is about the keeper's unit
        f"--user enable --now {name} [absent]",
    ]
    assert f"installed {name}: it runs the HTTP server (serve) of {real}" in result.stdout
    assert [path.name for path in systemd.units.iterdir()] == [name]  # not the keeper's

    removed = service_cli("uninstall", "--serve", "--vault", str(vault), env=env)
    assert removed.returncode == 0, removed.stderr
    assert not (systemd.units / name).exists()
    assert removed.stdout.splitlines()[-1] == f"uninstalled {name}"


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("--serve", "--bind", "nowhere"), "expected HOST:PORT"),
        (("--bind", "127.0.0.1:1"), "--bind and --read-only go with --serve"),
        (("--read-only",), "--bind and --read-only go with --serve"),
        (("--serve", "--worker"), "one at a time"),
    ],
)
def test_serve_flags_refused_with_exit_2(make_vault, systemd, args, error) -> None:
    vault = make_vault(CONFIG)
    result = service_cli("install", *args, "--vault", str(vault), env=systemd.env(vault))
    assert result.returncode == 2 and error in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not systemd.units.exists() or not any(systemd.units.iterdir())


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_itself_accepts_the_serve_unit(make_vault, systemd, tmp_path: Path) -> None:
    vault = make_vault(CONFIG, name="ops vault 100% $HOME")
    result = service_cli(
        "install", "--serve", "--bind", "[::1]:8765", "--dry-run", "--vault", str(vault),
        env=systemd.env(vault),
    )
    assert result.returncode == 0, result.stderr
    unit_file = tmp_path / "watchkeeper-serve-test.service"
    unit_file.write_text("\n".join(printed_unit(result.stdout)) + "\n")
    check = subprocess.run(
        ["systemd-analyze", "verify", str(unit_file)], capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stderr
