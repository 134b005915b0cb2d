"""`watchkeeper service install|uninstall` through the real CLI, against a fake
`systemctl` on PATH that records how it was called."""

from __future__ import annotations

import hashlib
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import CLI, run_cli

from watchkeeper.core import service
from watchkeeper.core.config import load_config

CONFIG = """\
[keeper]
shutdown_grace = "2m"
kill_grace = "10s"

[jobs.sweeper]
command = ["true"]
every = "5m"
"""

# Written out by hand from systemd.service(5) and systemd.unit(5), not built from the code.
EXPECTED_UNIT = """\
# Written by `watchkeeper service install`; `watchkeeper service uninstall` removes it.
[Unit]
Description=watchkeeper keeper for the vault {folder}

[Service]
Type=simple
ExecStart={cli} --daemon --vault {vault_word}
ExecReload=/bin/kill -HUP $MAINPID
WorkingDirectory={folder}
Environment=PYTHONUNBUFFERED=1
Restart=on-failure
RestartSec=5
# 2: the config is bad; 3: another keeper holds the vault. A restart fixes neither.
RestartPreventExitStatus=2 3
KillSignal=SIGTERM
# SIGTERM to the keeper alone: it drains its runs and ends their process groups itself.
# Whatever is left when TimeoutStopSec runs out gets SIGKILL.
KillMode=mixed
TimeoutStopSec={timeout}

[Install]
WantedBy=default.target
"""

FAKE_SYSTEMCTL = """\
#!/bin/sh
# Records each call, and whether the unit file existed at that moment.
if [ -e "$FAKE_UNIT" ]; then state=present; else state=absent; fi
printf '%s [%s]\\n' "$*" "$state" >> "$FAKE_LOG"
if [ "$2" = "$FAKE_FAIL_ON" ]; then
    echo "fake systemctl: $2 refused (Unit file is masked.)" >&2
    exit 1
fi
exit 0
"""


def expected_name(vault: Path, slug: str | None = None) -> str:
    """The unit name as the brief defines it; the folder name is the slug unless given."""
    digest = hashlib.sha256(str(vault.resolve()).encode()).hexdigest()[:8]
    return f"watchkeeper-{slug or vault.name}-{digest}.service"


@dataclass
class Systemd:
    """A fake systemctl alone on PATH, and a private XDG_CONFIG_HOME."""

    root: Path

    @property
    def log(self) -> Path:
        return self.root / "calls.log"

    @property
    def units(self) -> Path:
        return self.root / "config" / "systemd" / "user"

    def env(
        self, vault: Path, fail_on: str = "", with_systemctl: bool = True, slug: str | None = None
    ) -> dict:
        bin_dir = self.root / ("bin" if with_systemctl else "empty-bin")
        return {
            "PATH": str(bin_dir),
            "XDG_CONFIG_HOME": str(self.root / "config"),
            "FAKE_LOG": str(self.log),
            "FAKE_UNIT": str(self.units / expected_name(vault, slug)),
            "FAKE_FAIL_ON": fail_on,
        }

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def systemd(tmp_path: Path) -> Systemd:
    root = tmp_path / "systemd"
    (root / "bin").mkdir(parents=True)
    (root / "empty-bin").mkdir()
    fake = root / "bin" / "systemctl"
    fake.write_text(FAKE_SYSTEMCTL)
    fake.chmod(0o755)
    return Systemd(root)


def service_cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return run_cli("service", *args, env=env)


def printed_unit(stdout: str) -> list[str]:
    """The unit text between the `unit file:` line and what follows it."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("unit file: ")) + 1
    end = next(i for i, line in enumerate(lines) if line.startswith(("would run:", "$ ")))
    while lines[end - 1] == "":
        end -= 1
    return lines[start:end]


# ---- dry run -----------------------------------------------------------------------


def test_dry_run_prints_the_unit_and_commands_and_touches_nothing(make_vault, systemd) -> None:
    vault = make_vault(CONFIG)
    name = expected_name(vault)
    result = service_cli("install", "--dry-run", "--vault", str(vault), env=systemd.env(vault))
    assert result.returncode == 0, result.stderr
    real = str(vault.resolve())
    expected = EXPECTED_UNIT.format(
        folder=real, cli=CLI, vault_word=real, timeout=2 * 60 + 10 + 5 + 10
    )
    assert printed_unit(result.stdout) == expected.splitlines()
    lines = result.stdout.splitlines()
    assert lines[0] == "dry run: nothing is written and nothing is run"
    assert lines[1] == f"unit file: {systemd.units / name} (would be new, mode 0644)"
    would = lines.index("would run:")
    assert lines[would + 1 :] == [
        "  systemctl --user daemon-reload",
        f"  systemctl --user enable --now {name}",
    ]
    # Only the read-only probe ran; nothing was written.
    assert systemd.calls() == ["--user show-environment [absent]"]
    assert not (systemd.root / "config").exists()


def test_dry_run_quotes_a_vault_path_with_blanks_percent_and_dollar(make_vault, systemd) -> None:
    vault = make_vault(CONFIG, name="ops vault 100% $HOME")
    name = expected_name(vault, "ops-vault-100-home")
    env = systemd.env(vault, slug="ops-vault-100-home")
    result = service_cli("install", "--dry-run", "--vault", str(vault), env=env)
    assert result.returncode == 0, result.stderr
    real = str(vault.resolve())
    unit = printed_unit(result.stdout)
    escaped = real.replace("%", "%%")
    assert f'ExecStart={CLI} --daemon --vault "{escaped.replace("$", "$$")}"' in unit
    assert f"WorkingDirectory={escaped}" in unit
    assert f"Description=watchkeeper keeper for the vault {escaped}" in unit
    assert result.stdout.splitlines()[1].startswith(f"unit file: {systemd.units / name} ")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_itself_accepts_the_unit(make_vault, systemd, tmp_path: Path) -> None:
    vault = make_vault(CONFIG, name="ops vault 100% $HOME")
    result = service_cli("install", "--dry-run", "--vault", str(vault), env=systemd.env(vault))
    unit_file = tmp_path / "watchkeeper-test.service"
    unit_file.write_text("\n".join(printed_unit(result.stdout)) + "\n")
    # An unbalanced quote or a bad escape fails this; so does a program that is not there.
    check = subprocess.run(
        ["systemd-analyze", "verify", str(unit_file)], capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stderr


def test_dry_run_without_systemd_says_so(make_vault, systemd) -> None:
    vault = make_vault(CONFIG)
    env = systemd.env(vault, with_systemctl=False)
    result = service_cli("install", "--dry-run", "--vault", str(vault), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("note: systemctl is not on PATH")
    assert not (systemd.root / "config").exists()


# ---- no systemd ----------------------------------------------------------------------


def test_install_without_systemctl_writes_nothing(make_vault, systemd) -> None:
    vault = make_vault(CONFIG)
    env = systemd.env(vault, with_systemctl=False)
    result = service_cli("install", "--vault", str(vault), env=env)
    assert result.returncode == 1
    assert "systemctl is not on PATH" in result.stderr
    assert "nothing written" in result.stderr
    assert not (systemd.root / "config").exists()


def test_install_without_a_user_manager_writes_nothing(make_vault, systemd) -> None:
    vault = make_vault(CONFIG)
    env = systemd.env(vault, fail_on="show-environment")
    result = service_cli("install", "--vault", str(vault), env=env)
    assert result.returncode == 1
    assert "no systemd user manager is reachable" in result.stderr
    assert "fake systemctl: show-environment refused" in result.stderr
    assert systemd.calls() == ["--user show-environment [absent]"]
    assert not (systemd.root / "config").exists()


def test_uninstall_without_a_user_manager_keeps_the_unit(make_vault, systemd) -> None:
    vault = make_vault(CONFIG)
    unit = systemd.units / expected_name(vault)
    unit.parent.mkdir(parents=True)
    unit.write_text("[Unit]\n")
    env = systemd.env(vault, fail_on="show-environment")
    result = service_cli("uninstall", "--vault", str(vault), env=env)
    assert result.returncode == 1
    assert "nothing removed" in result.stderr
    assert unit.read_text() == "[Unit]\n"


# ---- install and uninstall -----------------------------------------------------------


def test_install_writes_the_unit_and_enables_it(make_vault, systemd) -> None:
    vault = make_vault(CONFIG)
    name = expected_name(vault)
    unit = systemd.units / name
    env = systemd.env(vault)

    result = service_cli("install", "--vault", str(vault), env=env)
    assert result.returncode == 0, result.stderr
    real = str(vault.resolve())
    expected = EXPECTED_UNIT.format(folder=real, cli=CLI, vault_word=real, timeout=145)
    assert unit.read_text() == expected
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    assert systemd.calls() == [
        "--user show-environment [absent]",
        "--user daemon-reload [present]",
        f"--user enable --now {name} [present]",
    ]
    lines = result.stdout.splitlines()
    assert lines[0] == f"unit file: {unit} (new)"
    assert printed_unit(result.stdout) == expected.splitlines()
    assert lines.count("  ok") == 2
    assert "$ systemctl --user daemon-reload" in lines
    assert f"$ systemctl --user enable --now {name}" in lines
    assert f"installed {name}: it runs the keeper of {real}" in lines

    again = service_cli("install", "--vault", str(vault), env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0] == f"unit file: {unit} (unchanged)"

    unit.write_text(expected.replace("RestartSec=5", "RestartSec=1"))
    replaced = service_cli("install", "--vault", str(vault), env=env)
    assert replaced.returncode == 0, replaced.stderr
    assert replaced.stdout.splitlines()[0] == f"unit file: {unit} (replaced)"
    assert f"systemctl --user restart {name}" in replaced.stdout
    assert unit.read_text() == expected
    assert [path.name for path in systemd.units.iterdir()] == [name]


def test_uninstall_disables_then_removes_then_reloads(make_vault, systemd) -> None:
    vault = make_vault(CONFIG)
    name = expected_name(vault)
    env = systemd.env(vault)
    assert service_cli("install", "--vault", str(vault), env=env).returncode == 0
    systemd.log.unlink()

    dry = service_cli("uninstall", "--dry-run", "--vault", str(vault), env=env)
    assert dry.returncode == 0, dry.stderr
    assert f"  systemctl --user disable --now {name}" in dry.stdout.splitlines()
    assert (systemd.units / name).exists()

    result = service_cli("uninstall", "--vault", str(vault), env=env)
    assert result.returncode == 0, result.stderr
    assert not (systemd.units / name).exists()
    assert systemd.calls() == [
        "--user show-environment [present]",  # the dry run's probe
        "--user show-environment [present]",
        f"--user disable --now {name} [present]",
        "--user daemon-reload [absent]",
    ]
    assert f"removed {systemd.units / name}" in result.stdout.splitlines()
    assert result.stdout.splitlines()[-1] == f"uninstalled {name}"


def test_uninstall_when_not_installed(make_vault, systemd) -> None:
    vault = make_vault(CONFIG)
    result = service_cli("uninstall", "--vault", str(vault), env=systemd.env(vault))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (f"not installed: no {systemd.units / expected_name(vault)}")
    assert systemd.calls() == []


def test_a_failing_enable_shows_its_stderr(make_vault, systemd) -> None:
    vault = make_vault(CONFIG)
    name = expected_name(vault)
    result = service_cli("install", "--vault", str(vault), env=systemd.env(vault, "enable"))
    assert result.returncode == 1
    assert "fake systemctl: enable refused (Unit file is masked.)" in result.stderr
    assert f"`systemctl --user enable --now {name}` failed (exit 1)" in result.stderr
    assert systemd.calls()[-1] == f"--user enable --now {name} [present]"
    assert "installed" not in result.stdout


def test_a_failing_disable_keeps_the_unit(make_vault, systemd) -> None:
    vault = make_vault(CONFIG)
    name = expected_name(vault)
    assert service_cli("install", "--vault", str(vault), env=systemd.env(vault)).returncode == 0
    result = service_cli("uninstall", "--vault", str(vault), env=systemd.env(vault, "disable"))
    assert result.returncode == 1
    assert "fake systemctl: disable refused" in result.stderr
    assert (systemd.units / name).exists()
    assert "daemon-reload" not in systemd.calls()[-1]


def test_bad_config_refuses_with_exit_2(make_vault, systemd) -> None:
    vault = make_vault('[jobs.broken]\ncommand = ["true"]\nevery = "often"\n')
    result = service_cli("install", "--vault", str(vault), env=systemd.env(vault))
    assert result.returncode == 2
    assert f"{vault / 'watchkeeper.toml'}:3:" in result.stderr
    assert not (systemd.root / "config").exists()
    assert systemd.calls() == []


# ---- the pieces ----------------------------------------------------------------------


def test_unit_names_are_stable_and_distinct(tmp_path: Path) -> None:
    one, two = tmp_path / "a" / "Vault", tmp_path / "b" / "Vault"
    one.mkdir(parents=True)
    two.mkdir(parents=True)
    assert service.unit_name(one) != service.unit_name(two)
    assert service.unit_name(one) == service.unit_name(tmp_path / "b" / ".." / "a" / "Vault")
    assert service.unit_name(one).startswith("watchkeeper-vault-")
    assert service.unit_name(tmp_path / "%%").startswith("watchkeeper-vault-")


def test_unit_path_follows_xdg_config_home(tmp_path: Path) -> None:
    home = {"HOME": str(tmp_path)}
    default = tmp_path / ".config" / "systemd" / "user" / "x.service"
    assert service.unit_path("x.service", home) == default
    # A relative XDG_CONFIG_HOME is to be ignored (XDG base directory spec).
    assert service.unit_path("x.service", {**home, "XDG_CONFIG_HOME": "rel"}) == default
    custom = {**home, "XDG_CONFIG_HOME": "/etc/xdg-test"}
    assert service.unit_path("x.service", custom) == Path("/etc/xdg-test/systemd/user/x.service")


def test_exec_line_quotes_each_word_for_systemd() -> None:
    argv = ["/opt/my tools/wk", "plain-word", 'say "hi"', "back\\slash", "$HOME", "50%", "a\tb"]
    assert service.exec_line(argv) == (
        '"/opt/my tools/wk" plain-word "say \\"hi\\"" "back\\\\slash" "$$HOME" "50%%" "a\\tb"'
    )


def test_a_path_systemd_cannot_name_is_refused(tmp_path: Path) -> None:
    for bad in ("new\nline", "trailing ", "back\\"):
        with pytest.raises(ValueError, match="systemd unit cannot name it"):
            service.unit_text(tmp_path / bad, ["/bin/wk"], 50)


def test_stop_timeout_covers_the_keepers_drain(make_vault) -> None:
    vault = make_vault('[keeper]\nshutdown_grace = "1500ms"\nkill_grace = "0s"\n')
    assert service.stop_timeout(load_config(vault / "watchkeeper.toml").keeper) == 17


def test_launcher_finds_the_script_else_imports_the_cli(tmp_path: Path, monkeypatch) -> None:
    script = tmp_path / "bin" / "watchkeeper"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    assert service.launcher("bin/watchkeeper", "/nowhere/python") == [str(script)]
    assert service.launcher("-c", str(tmp_path / "bin" / "python")) == [str(script)]

    fallback = service.launcher("-c", str(tmp_path / "empty" / "python3"))
    assert fallback[1:] == ["-P", "-m", "watchkeeper.tui.cli.main"]
    # The fallback must itself start the CLI, from a folder that is not the repo.
    fallback[0] = sys.executable
    shown = subprocess.run(
        [*fallback, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert shown.returncode == 0, shown.stderr
    assert "Keeps watch over a file-based task vault" in shown.stdout
