"""Random watchkeeper.toml variants for the config phase of bench/chaos.py: a good base
config with hostile values put into its keys, structural oddities (deep nesting, long
`after` chains, thousands of jobs, cycles), and text damage (cut, garbage, bad UTF-8).
Commands stay harmless: a variant's command is the base one, `true`, `false` or malformed.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

from chaos_kit import MARK

SECRET = "BADLINE-SECRET-5f3c9a"
"""On a malformed line of secret.env: no error text may ever quote it."""
ENV_SECRET = "ENV-SECRET-c41d7e"
"""The value of API_TOKEN in some variants, echoed by the job: logs show it masked."""
SECRET_ENV_FILE = f"API_TOKEN: {SECRET}\nGOOD=1\n"
GOOD_ENV_FILE = f"API_TOKEN={ENV_SECRET}\n"

# fmt: off
DURATIONS = [
    float("nan"), float("inf"), float("-inf"), 0, -1, 1e-300, 1e308, 0.0001, 2**63 - 1,
    -(2**63), "0s", "-5s", "1e-300s", "99999999999999999999w", "1" + "0" * 400 + "s", "",
    "5", "5 m", "1h30", "ms", "nan", "inf", "1.5.3s", "10ms", "1d", True, [], {}, "🙂",
]
COUNTS = [
    0, -1, 1, 3, 2**31, 2**63 - 1, -(2**63), 1_000_000, 1_000_000_000_000, 1.5,
    float("nan"), float("inf"), "3", True, [],
]
SIZES = [
    "0B", "1B", "1" + "0" * 400 + "B", "-1MB", "5XB", "", 0, -1, 1e308, float("nan"),
    "1e999MB", "9999999999999999999999GB", "1KB", "100", 2**63 - 1,
]
CRONS = [
    "", "* * * *", "* * * * * * *", "60 * * * *", "*/0 * * * *", "0 0 31 2 *", "0 0 30 2 *",
    "@reboot", "@yearly", "@every 5m", "1-100000 * * * *", "*/1 * * * * *", "L * * * *",
    "0 0 * * 8", 5, "*/1," * 5000 + "1 * * * *", "0 3 * * *", "0 2 29 2 1",
]
WORDS = ["", "SKIP", "queue ", 1, "nope", "once", "none", "allow", "skip", "queue", "🙂"]
ZONES = ["Mars/Base", "", "UTC", "../../etc/passwd", "Europe/Berlin\0", 5, "America/New_York"]
COMMANDS = [
    [], [""], ["\0"], "", "true\0", "   ", [1, 2], [[]], ["true", 5], "x" * 100_000,
    ["nonexistent-binary-wk-chaos"], ["true"], ["false"], "exit 7",
]
GLOBS = [
    [], [""], ["/etc/*"], ["../*"], ["Inbox/**/*.md"], ["["], ["Inbox/*.md"] * 1000,
    "Inbox/*.md", [5], ["Inbox/*.md", "Plans/*"], ["**"],
]
PATHS = [
    "../../etc/shadow", "/etc/passwd", "missing.env", "secret.env", "", "Logs", ".", "/",
    "..", "/tmp", "Inbox", "watchkeeper.toml", "a\0b", 5,
]
ENVS: list[Any] = [
    {"A": 5}, {"": "x"}, {"A=B": "x"}, {"A": "\0"}, {"A": "${UNDEFINED_WK}"}, {"PATH": ""},
    "x", {"API_TOKEN": ENV_SECRET}, {"A": "x" * 200_000},
]
# fmt: on
TEXTS = ["x" * 100_000, "naïve ✓", "\0", 5, "", "line\nbreak"]
KEEPER_KEYS: dict[str, list[Any]] = {
    "timezone": ZONES,
    "max_runs_per_hour": COUNTS,
    "max_parallel": COUNTS,
    "log_max_size": SIZES,
    "log_backups": COUNTS,
    "history_retention_days": COUNTS,
    "catch_up": WORDS,
    "kill_grace": DURATIONS,
    "shutdown_grace": DURATIONS,
    "log_mode": ["0640", "0777", "abc", 5, "-1", "0o7777", "0600"],
    "evry": COUNTS,
}
JOB_KEYS: dict[str, list[Any]] = {
    "command": COMMANDS,
    "cron": CRONS,
    "every": DURATIONS,
    "on_files": GLOBS,
    "after": [["nope"], [], ["heartbeat", "heartbeat"], "heartbeat", [5], ["intake"]],
    "enabled": ["yes", 0, True, False],
    "timeout": DURATIONS,
    "retries": COUNTS,
    "retry_delay": DURATIONS,
    "max_retry_delay": DURATIONS,
    "max_per_hour": COUNTS,
    "overlap": WORDS,
    "settle": DURATIONS,
    "quarantine_after": COUNTS,
    "secret_env": [["A"], "A", [5], [""], ["API_TOKEN"]],
    "env": ENVS,
    "env_file": PATHS,
    "cwd": PATHS,
    "on_success": COMMANDS,
    "on_failure": COMMANDS,
    "description": TEXTS,
    "comand": COMMANDS,
}
JOB_NAMES = ["", "a b", "x" * 5000, "../up", "naïve", "a\0b", "heartbeat"]


def base(command: list[str]) -> dict[str, Any]:
    """The good config every variant starts from; `command` is a harmless marked one."""
    return {
        "keeper": {"max_parallel": 4, "kill_grace": "1s", "shutdown_grace": "2s"},
        "jobs": {
            "heartbeat": {"command": command, "every": "300ms"},
            "intake": {"command": command, "on_files": ["Inbox/*.md"], "settle": "100ms"},
            "nightly": {"command": command, "cron": "0 3 * * *"},
            "follow": {"command": command, "after": ["heartbeat"]},
            "leaky": {
                "command": ["sh", "-c", 'echo "token $API_TOKEN"', MARK],
                "every": "1s",
                "env_file": "good.env",
            },
        },
    }


def variant(rng: random.Random, command: list[str]) -> bytes:
    config = base(command)
    kind = rng.random()
    if kind < 0.55:
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            _hostile_value(rng, config)
    elif kind < 0.7:
        _structure(rng, config)
    text = dumps(config).encode()
    return _damage(rng, text) if kind >= 0.85 else text


def _hostile_value(rng: random.Random, config: dict[str, Any]) -> None:
    if rng.random() < 0.25:
        key = rng.choice(list(KEEPER_KEYS))
        config["keeper"][key] = rng.choice(KEEPER_KEYS[key])
        return
    job = config["jobs"][rng.choice(list(config["jobs"]))]
    key = rng.choice(list(JOB_KEYS))
    pool = JOB_KEYS[key] if rng.random() < 0.85 else rng.choice(list(JOB_KEYS.values()))
    value = rng.choice(pool)
    if key in ("command", "on_success", "on_failure") and value in (["true"], ["false"]):
        value = ["sh", "-c", value[0], MARK]
    job[key] = value


def _structure(rng: random.Random, config: dict[str, Any]) -> None:
    jobs = config["jobs"]
    command = jobs["heartbeat"]["command"]
    choice = rng.randrange(7)
    if choice == 0:  # a long after chain
        length = rng.choice((100, 3000))
        for index in range(length):
            after = [f"c{index - 1}"] if index else ["heartbeat"]
            jobs[f"c{index}"] = {"command": command, "after": after}
    elif choice == 1:  # a cycle
        jobs["heartbeat"]["after"] = ["follow"]
    elif choice == 2:  # thousands of jobs
        for index in range(rng.choice((500, 2000))):
            jobs[f"j{index}"] = {"command": command, "cron": "0 4 * * *"}
    elif choice == 3:  # deep nesting
        jobs["heartbeat"][rng.choice(list(JOB_KEYS))] = Raw("[" * 5000 + "]" * 5000)
    elif choice == 4:  # odd job names
        jobs[rng.choice(JOB_NAMES)] = {"command": command, "every": "1h"}
    elif choice == 5:  # a job that is not a table, or no jobs
        if rng.random() < 0.5:
            jobs["flat"] = Raw('"just a string"')
        else:
            config["jobs"] = {}
    else:  # the secret env file on a job that runs
        jobs["leaky"]["env_file"] = "secret.env"


def _damage(rng: random.Random, data: bytes) -> bytes:
    """Broken TOML: cut anywhere, random bytes (often not UTF-8), a repeated line (a
    duplicate key or table), quotes swapped, an `=` lost, a table defined twice."""
    choice = rng.randrange(6)
    at = rng.randrange(len(data) + 1)
    if choice == 0:
        return data[:at]
    if choice == 1:
        return data[:at] + bytes(rng.getrandbits(8) for _ in range(8)) + data[at:]
    if choice == 2:
        lines = data.splitlines()
        line = rng.randrange(len(lines))
        return b"\n".join(lines[: line + 1] + lines[line:])
    if choice == 3:
        return data.replace(b'"', b"'", rng.randint(1, 5))
    if choice == 4:
        return data.replace(b"=", b"", 1)
    return data + b"\n[jobs.heartbeat]\n"


class Raw(str):
    """TOML text put in as it is."""


_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(key: str) -> str:
    return key if _BARE.match(key) else json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def dumps(config: dict[str, Any]) -> str:
    out = ["[keeper]"]
    out += [f"{_key(key)} = {_value(value)}" for key, value in config["keeper"].items()]
    for name, job in config["jobs"].items():
        if isinstance(job, Raw):
            out += ["", "[jobs]", f"{_key(name)} = {job}"]
            continue
        out += ["", f"[jobs.{_key(name)}]"]
        out += [f"{_key(key)} = {_value(value)}" for key, value in job.items()]
    return "\n".join(out) + "\n"
