"""A systemd user unit that runs the keeper headless (`watchkeeper --daemon`).

Plain functions that build the unit's name, place, text and the systemctl commands;
the CLI decides what to print and runs the commands.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from watchkeeper.core.config import KeeperConfig

SYSTEMCTL = ("systemctl", "--user")
# What the keeper itself may still need after its drain: its own wait once the runs'
# groups were told to end (keeper.stop), then writing outputs and closing files.
KEEPER_AFTER_KILL = 5.0
STOP_MARGIN = 10.0
# Words systemd takes literally in an ExecStart line; anything else gets quoted.
_PLAIN_WORD = re.compile(r"[A-Za-z0-9_@+=:,./-]+")
_C_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def unit_name(vault: Path, worker: bool = False, serve: bool = False) -> str:
    """`watchkeeper-<slug of the folder name>-<8 hex of the resolved path>.service`, and
    `watchkeeper-worker-...` for the vault's cluster worker on this host,
    `watchkeeper-serve-...` for its `watchkeeper serve`.

    The slug makes `systemctl --user list-units` readable; the hash keeps two vaults
    with the same folder name (~/a/vault, ~/b/vault) apart.
    """
    resolved = vault.resolve()
    slug = re.sub(r"[^a-z0-9]+", "-", resolved.name.lower()).strip("-")[:32].strip("-")
    digest = hashlib.sha256(os.fsencode(resolved)).hexdigest()[:8]
    kind = "watchkeeper-worker" if worker else "watchkeeper-serve" if serve else "watchkeeper"
    return f"{kind}-{slug or 'vault'}-{digest}.service"


def unit_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Where the user manager looks for units the user wrote: $XDG_CONFIG_HOME/systemd/user."""
    base = environ.get("XDG_CONFIG_HOME", "")
    # The XDG spec says to ignore a relative XDG_CONFIG_HOME, and systemd does.
    if not base or not os.path.isabs(base):
        home = environ.get("HOME")
        base = os.path.join(home if home else Path.home(), ".config")
    return Path(base) / "systemd" / "user"


def unit_path(name: str, environ: Mapping[str, str] = os.environ) -> Path:
    return unit_dir(environ) / name


def launcher(argv0: str | None = None, python: str | None = None) -> list[str]:
    """The absolute command that starts watchkeeper, for ExecStart.

    The running `watchkeeper` script if that is what was started, else the one beside
    the interpreter (a venv's bin/), else the interpreter running the CLI's module.
    """
    argv0 = sys.argv[0] if argv0 is None else argv0
    python = sys.executable if python is None else python
    script = Path(argv0)
    if script.name == "watchkeeper" and script.is_file() and os.access(script, os.X_OK):
        # abspath, not resolve: a pipx-style symlink in ~/.local/bin survives upgrades.
        return [os.path.abspath(script)]
    beside = shutil.which("watchkeeper", path=str(Path(python).parent))
    if beside is not None:
        return [os.path.abspath(beside)]
    # -P: the unit starts in the vault, whose own folders must not shadow the package.
    return [os.path.abspath(python), "-P", "-m", "watchkeeper.tui.cli.main"]


def stop_timeout(keeper: KeeperConfig) -> int:
    """Seconds systemd waits after SIGTERM before SIGKILL: the keeper's whole drain
    (runs finish for shutdown_grace, then TERM to their groups, KILL after kill_grace)
    plus its own wind-down, so systemd never cuts a clean stop short."""
    return math.ceil(keeper.shutdown_grace + keeper.kill_grace + KEEPER_AFTER_KILL + STOP_MARGIN)


def check_path(path: Path) -> None:
    """Refuse a path a unit file cannot carry: settings are one line each, the parser
    strips trailing blanks, and a trailing backslash continues the line."""
    text = str(path)
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise ValueError(f"{text!r} holds a control character; a systemd unit cannot name it")
    if text != text.rstrip() or text.endswith("\\"):
        raise ValueError(f"{text!r} ends in a blank or backslash; a systemd unit cannot name it")


def _specifiers(text: str) -> str:
    # systemd expands %-specifiers in these settings; a literal % is %%.
    return text.replace("%", "%%")


def _exec_word(word: str) -> str:
    # $ is environment substitution at exec time, quoted or not; $$ is a literal $.
    word = word.replace("$", "$$")
    if _PLAIN_WORD.fullmatch(word):
        return word
    escaped = "".join(
        _C_ESCAPES.get(char, f"\\x{ord(char):02x}" if ord(char) < 32 or ord(char) == 127 else char)
        for char in word
    )
    return f'"{escaped}"'


def exec_line(argv: Sequence[str]) -> str:
    """argv as an ExecStart value: each word that needs it in double quotes with C escapes
    (systemd.service "Command lines"), $ and % escaped, so systemd hands the command
    exactly these words."""
    return _specifiers(" ".join(_exec_word(word) for word in argv))


def unit_text(vault: Path, executable: Sequence[str], stop_timeout: int) -> str:
    """The unit file for the keeper of `vault` (absolute), started as `executable`."""
    check_path(vault)
    command = exec_line([*executable, "--daemon", "--vault", str(vault)])
    folder = _specifiers(str(vault))
    # No After=default.target: default.target is ordered after what it wants, so that
    # would be an ordering cycle. A user service already starts after basic.target.
    return f"""\
# Written by `watchkeeper service install`; `watchkeeper service uninstall` removes it.
[Unit]
Description=watchkeeper keeper for the vault {folder}

[Service]
Type=simple
ExecStart={command}
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
TimeoutStopSec={stop_timeout}

[Install]
WantedBy=default.target
"""


def worker_unit_text(
    vault: Path, executable: Sequence[str], options: Sequence[str], stop_timeout: int
) -> str:
    """The unit file for a cluster worker (`watchkeeper worker`) serving `vault`'s
    cluster; `options` are its --labels and --concurrency."""
    check_path(vault)
    command = exec_line([*executable, "worker", "--vault", str(vault), *options])
    folder = _specifiers(str(vault))
    return f"""\
# Written by `watchkeeper service install --worker`; `watchkeeper service uninstall --worker`
# removes it.
[Unit]
Description=watchkeeper worker for the cluster of the vault {folder}
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
ExecStart={command}
WorkingDirectory={folder}
Environment=PYTHONUNBUFFERED=1
Restart=on-failure
RestartSec=5
# Exit 2 is a bad config but also the database unreachable at start, which a restart
# may mend: no RestartPreventExitStatus; systemd's start limit ends a hopeless loop.
KillSignal=SIGTERM
# SIGTERM to the worker alone: it ends its runs' process groups (TERM, KILL after the
# grace) and reports them interrupted. Whatever is left at TimeoutStopSec gets SIGKILL.
KillMode=mixed
TimeoutStopSec={stop_timeout}

[Install]
WantedBy=default.target
"""


SERVE_STOP_TIMEOUT = 30  # serve holds no runs: its browser consoles and streams just close


def serve_unit_text(vault: Path, executable: Sequence[str], options: Sequence[str]) -> str:
    """The unit file for `watchkeeper serve` next to `vault`'s keeper; `options` are its
    --bind and --read-only. Ordered after the keeper's unit when both start, never tied
    to it: serve answers /healthz 503 while no keeper runs and catches up when one does."""
    check_path(vault)
    command = exec_line([*executable, "serve", "--vault", str(vault), *options])
    folder = _specifiers(str(vault))
    return f"""\
# Written by `watchkeeper service install --serve`; `watchkeeper service uninstall --serve`
# removes it.
[Unit]
Description=watchkeeper serve (console, events, metrics over HTTP) for the vault {folder}
After={unit_name(vault)}

[Service]
Type=simple
ExecStart={command}
WorkingDirectory={folder}
Environment=PYTHONUNBUFFERED=1
Restart=on-failure
RestartSec=5
# Exit 2 is a bad --bind but also a port another process still holds, which a restart
# may mend: no RestartPreventExitStatus; systemd's start limit ends a hopeless loop.
KillSignal=SIGTERM
TimeoutStopSec={SERVE_STOP_TIMEOUT}

[Install]
WantedBy=default.target
"""


def daemon_reload() -> list[str]:
    return [*SYSTEMCTL, "daemon-reload"]


def install_commands(name: str) -> list[list[str]]:
    """Run after the unit file is written."""
    return [daemon_reload(), [*SYSTEMCTL, "enable", "--now", name]]


def uninstall_commands(name: str) -> tuple[list[str], list[str]]:
    """(before removing the unit file, after removing it): stop and disable while systemd
    still knows the unit, then let it forget the file."""
    return [*SYSTEMCTL, "disable", "--now", name], daemon_reload()


def systemd_absence(timeout: float = 10.0) -> str | None:
    """Why there is no systemd user manager to talk to, or None when there is one."""
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        return "systemctl is not on PATH: this system does not seem to run systemd"
    try:
        probe = subprocess.run(
            [systemctl, "--user", "show-environment"],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return f"`systemctl --user show-environment` did not answer within {timeout:g}s"
    except OSError as error:
        return f"cannot run {systemctl}: {error.strerror or error}"
    if probe.returncode != 0:
        detail = probe.stderr.strip() or f"exit {probe.returncode}"
        return (
            f"no systemd user manager is reachable (`systemctl --user show-environment`: "
            f"{detail}); log in through a session (not su/sudo), or see `loginctl enable-linger`"
        )
    return None
