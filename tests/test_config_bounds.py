"""Issue 14: config values that passed validate and then broke the keeper. Every number is
bounded, durations are finite, strings hold no NUL, paths stay in the vault, and no input
makes loading raise anything but ConfigError."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import pytest
from config_fuzz import BOUNDS, KEYS, structural_documents

from watchkeeper.core.config import CONFIG_NAME, INTERNAL, ConfigError, ConfigIssue, load_config
from watchkeeper.core.config_values import JOB_FIELDS

ROOT = Path(__file__).resolve().parent.parent


def load(vault: Path, text: str):
    vault.mkdir(exist_ok=True)
    path = vault / CONFIG_NAME
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def issues(vault: Path, text: str) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as caught:
        load(vault, text)
    return caught.value.issues


def one_issue(vault: Path, text: str) -> ConfigIssue:
    found = issues(vault, text)
    assert len(found) == 1, found
    assert INTERNAL not in (found[0].key,), found
    return found[0]


def job(line: str) -> str:
    return f'[jobs.a]\ncommand = "true"\n{line}\n'


def keeper(line: str) -> str:
    return f"[keeper]\n{line}\n"


def value_of(config, section: str, key: str) -> object:
    return getattr(config.keeper if section == "keeper" else config.jobs["a"], key)


def text_for(section: str, key: str, value: str) -> str:
    return keeper(f"{key} = {value}") if section == "keeper" else job(f"{key} = {value}")


# --- 3, 4: durations are finite ----------------------------------------------------------------


@pytest.mark.parametrize("key", ["timeout", "settle", "every", "retry_delay", "max_retry_delay"])
@pytest.mark.parametrize("value", ["inf", "nan", "+inf"])
def test_non_finite_job_durations_are_refused(tmp_path: Path, key: str, value: str) -> None:
    issue = one_issue(tmp_path, job(f"{key} = {value}"))
    assert (issue.line, issue.key) == (3, f"jobs.a.{key}")
    assert issue.message == f"expected a finite duration, got {value.lstrip('+')}"


@pytest.mark.parametrize("key", ["kill_grace", "shutdown_grace"])
def test_non_finite_keeper_durations_are_refused(tmp_path: Path, key: str) -> None:
    issue = one_issue(tmp_path, keeper(f"{key} = nan"))
    assert (issue.line, issue.key) == (2, f"keeper.{key}")


@pytest.mark.parametrize(
    "value", ['"99999999999999999999w"', "1e-300", "1" + "0" * 400, '"1' + "0" * 400 + 's"']
)
def test_every_out_of_bounds_is_refused(tmp_path: Path, value: str) -> None:
    issue = one_issue(tmp_path, job(f"every = {value}"))
    assert (issue.line, issue.key) == (3, "jobs.a.every")
    assert re.match(
        r"expected (a finite duration|a duration from 50ms to 366d), got", issue.message
    )


def test_minimum_interval_is_50ms(tmp_path: Path) -> None:
    assert load(tmp_path, job('every = "50ms"')).jobs["a"].every == pytest.approx(0.05)
    issue = one_issue(tmp_path, job('every = "49ms"'))
    assert issue.message == "expected a duration from 50ms to 366d, got '49ms'"


# --- 5, 6, 7: every number has documented bounds -----------------------------------------------


def _written(key: str, number: float) -> str:
    if key == "log_max_size" or isinstance(number, int) or number.is_integer():
        return str(int(number))
    return repr(number)


@pytest.mark.parametrize(("section", "key"), sorted(BOUNDS))
def test_bounds_are_inclusive(tmp_path: Path, section: str, key: str) -> None:
    low, high = BOUNDS[section, key]
    for number in (low, high):
        config = load(tmp_path, text_for(section, key, _written(key, number)))
        assert value_of(config, section, key) == pytest.approx(number), number


@pytest.mark.parametrize(("section", "key"), sorted(BOUNDS))
def test_values_past_the_bounds_are_refused(tmp_path: Path, section: str, key: str) -> None:
    low, high = BOUNDS[section, key]
    integral = isinstance(low, int) and isinstance(high, int)
    below = low - 1 if integral else low * 0.9
    for number in (high + 1, below) if low or integral else (high + 1,):
        written = str(int(number)) if integral else repr(float(number))
        issue = one_issue(tmp_path, text_for(section, key, written))
        assert issue.key == (f"jobs.a.{key}" if section == "jobs" else f"keeper.{key}")
        assert issue.message.startswith(("expected ", "a duration cannot be negative")), (
            issue.message
        )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("history_retention_days = 1000000", "expected an integer from 1 to 36,500, got 1000000"),
        (
            "log_backups = 1000000000000",
            "expected an integer from 0 to 1,000, got 1000000000000",
        ),
        ('log_max_size = "1023B"', "expected a size from 4KB to 1TB like '5MB', got '1023B'"),
        ('log_max_size = "2TB"', "expected a size from 4KB to 1TB like '5MB', got '2TB'"),
        ("max_parallel = 10001", "expected an integer from 1 to 10,000, got 10001"),
    ],
)
def test_keeper_numbers_out_of_bounds_name_the_bounds(
    tmp_path: Path, line: str, message: str
) -> None:
    assert one_issue(tmp_path, keeper(line)).message == message


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("retries = 101", "expected an integer from 0 to 100, got 101"),
        ("quarantine_after = 1001", "expected an integer from 1 to 1,000, got 1001"),
        ("max_per_hour = 1000001", "expected an integer from 0 to 1,000,000, got 1000001"),
        ('timeout = "5ms"', "expected a duration from 10ms to 366d, got '5ms'"),
        ('settle = "2d"', "expected a duration from 0s to 1d, got '2d'"),
        ('retry_delay = "367d"', "expected a duration from 0s to 366d, got '367d'"),
    ],
)
def test_job_numbers_out_of_bounds_name_the_bounds(tmp_path: Path, line: str, message: str) -> None:
    assert one_issue(tmp_path, job(line)).message == message


def test_readme_documents_every_key_and_the_bounds() -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Configuration")
    section = readme[start : readme.index("\n## ", start + 1)]
    for _, key in KEYS:
        assert re.search(rf"\b{key}\b", section), key
    for words in ("50ms", "36,500", "1TB", "0770", "NUL"):
        assert words in section, words


# --- 8: nothing but ConfigError, never a traceback --------------------------------------------


def test_huge_size_string_is_a_config_error(tmp_path: Path) -> None:
    issue = one_issue(tmp_path, keeper(f'log_max_size = "1{"0" * 400}B"'))
    assert (issue.line, issue.key) == (2, "keeper.log_max_size")
    assert issue.message.startswith("size too large, got '1000")


def test_integer_tomllib_cannot_convert_is_located(tmp_path: Path) -> None:
    issue = one_issue(tmp_path, "\n" + keeper(f"log_backups = {'7' * 5000}"))
    assert (issue.line, issue.key) == (3, "<toml>")
    assert issue.message == "an integer with over 4,300 digits"


def test_array_nested_5000_deep_is_located(tmp_path: Path) -> None:
    issue = one_issue(tmp_path, job(f"description = {'[' * 5000}{']' * 5000}"))
    assert (issue.line, issue.key) == (3, "<toml>")
    assert issue.message == "arrays or inline tables nested too deeply to read"


def test_array_nested_400_deep_reaches_the_checker(tmp_path: Path) -> None:
    # tomllib reads this; the line scanner used to recurse 3 frames a level and die.
    issue = one_issue(tmp_path, f"\n[jobs.a]\ncommand = {'[' * 400}{']' * 400}\n")
    assert (issue.line, issue.key) == (3, "jobs.a.command")


def test_tables_nested_200_deep_reach_the_checker(tmp_path: Path) -> None:
    found = issues(tmp_path, job(f"env = {'{a=' * 200}1{'}' * 200}"))
    assert [(issue.line, issue.key) for issue in found] == [(3, "jobs.a.env.a")]


def _chain(jobs: int, cycle: bool) -> str:
    text = "".join(
        f'[jobs.j{i}]\ncommand = "true"\nafter = ["j{i + 1}"]\n' for i in range(jobs - 1)
    )
    last = f'[jobs.j{jobs - 1}]\ncommand = "true"\n'
    return text + last + ('after = ["j0"]\n' if cycle else "")


def test_after_chain_of_3000_jobs_is_checked_without_recursion(tmp_path: Path) -> None:
    config = load(tmp_path, _chain(3000, cycle=False))
    assert len(config.jobs) == 3000
    assert config.jobs["j0"].after == ("j1",)


def test_after_cycle_through_3000_jobs_is_named_shortly(tmp_path: Path) -> None:
    issue = one_issue(tmp_path, _chain(3000, cycle=True))
    assert (issue.line, issue.key) == (3, "jobs.j0.after")
    assert issue.message == (
        "jobs wait on each other in a cycle: j0 -> j1 -> j2 -> j3 -> j4 -> j5 -> "
        "... 2992 more ... -> j2998 -> j2999 -> j0"
    )


def test_a_config_file_over_16_mib_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / CONFIG_NAME
    with path.open("wb") as handle:
        handle.truncate(16 * 2**20 + 1)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    [issue] = caught.value.issues
    assert (issue.line, issue.key) == (0, "<file>")
    assert issue.message.startswith("over 16 MiB")


def test_a_bug_in_a_check_is_a_config_error_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(value: object) -> object:
        raise ZeroDivisionError("a bug")

    monkeypatch.setitem(JOB_FIELDS, "description", broken)
    [issue] = issues(tmp_path, job('description = "x"'))
    assert (issue.line, issue.key) == (0, INTERNAL)
    assert issue.message.startswith("could not be checked (ZeroDivisionError: a bug)")


@pytest.mark.parametrize(
    ("name", "text"), structural_documents(), ids=[name for name, _ in structural_documents()]
)
def test_structural_documents_load_or_fail_cleanly(tmp_path: Path, name: str, text: str) -> None:
    try:
        load(tmp_path, text)
    except ConfigError as error:
        assert all(issue.key != INTERNAL and issue.line > 0 for issue in error.issues), error


# --- 17: NUL bytes, and paths that leave the vault ---------------------------------------------


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('command = "echo a\\u0000b"', "command"),
        ('command = ["echo", "a\\u0000b"]', "command"),
        ('on_failure = ["notify", "\\u0000"]', "on_failure"),
        ('env = { TOKEN = "se\\u0000cret" }', "env.TOKEN"),
        ('env = { "A\\u0000B" = "x" }', 'env."A\\u0000B"'),
        ('env_file = ".env\\u0000"', "env_file"),
        ('cwd = "scripts\\u0000"', "cwd"),
        ('on_files = ["Inbox/*\\u0000.md"]', "on_files"),
        ('secret_env = ["A\\u0000"]', "secret_env"),
        ('description = "a\\u0000"', "description"),
    ],
)
def test_nul_bytes_are_refused(tmp_path: Path, line: str, key: str) -> None:
    text = job(line).replace('command = "true"\n', "") if line.startswith("command") else job(line)
    issue = one_issue(tmp_path, text)
    assert issue.key == f"jobs.a.{key}"
    assert issue.message == "contains a NUL byte, which no command, path or variable can hold"


def test_strings_longer_than_a_process_takes_are_refused(tmp_path: Path) -> None:
    issue = one_issue(tmp_path, f'[jobs.a]\ncommand = ["echo", "{"x" * 200_000}"]\n')
    assert issue.message == "a string of 200,000 bytes; at most 131,071"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('env_file = "../../etc/shadow"', "'../../etc/shadow' must stay inside the vault: no '..'"),
        ('env_file = "/etc/shadow"', "expected a path relative to the vault, got '/etc/shadow'"),
        ('cwd = "/tmp"', "expected a path relative to the vault, got '/tmp'"),
        ('cwd = ".."', "'..' must stay inside the vault: no '..'"),
        ('cwd = "scripts/../../x"', "'scripts/../../x' must stay inside the vault: no '..'"),
    ],
)
def test_paths_that_leave_the_vault_by_their_words(tmp_path: Path, line: str, message: str) -> None:
    issue = one_issue(tmp_path, job(line))
    assert (issue.line, issue.message) == (3, message)


def test_paths_that_leave_the_vault_through_a_symlink(tmp_path: Path) -> None:
    vault, outside = tmp_path / "vault", tmp_path / "outside"
    (vault / "scripts").mkdir(parents=True)
    outside.mkdir()
    os.symlink(outside, vault / "out")
    os.symlink("../out", vault / "scripts" / "back-out")
    found = issues(vault, job('cwd = "out"\nenv_file = "scripts/back-out/.env"'))
    assert [(issue.line, issue.key, issue.message) for issue in found] == [
        (3, "jobs.a.cwd", "'out' leads outside the vault"),
        (4, "jobs.a.env_file", "'scripts/back-out/.env' leads outside the vault"),
    ]


def test_paths_inside_the_vault_are_kept(tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    (vault / "scripts").mkdir(parents=True)
    os.symlink("scripts", vault / "tools")
    # The vault reached through a symlink of its own is still the vault.
    os.symlink(vault, tmp_path / "alias")
    config = load(tmp_path / "alias", job('cwd = "tools"\nenv_file = "scripts/.env"'))
    assert (config.jobs["a"].cwd, config.jobs["a"].env_file) == ("tools", "scripts/.env")


# --- 15: [keeper] log_mode -------------------------------------------------------------------


def test_log_mode_defaults_to_owner_only(tmp_path: Path) -> None:
    config = load(tmp_path, job(""))
    assert (config.keeper.log_mode, config.keeper.file_mode) == (0o700, 0o600)


@pytest.mark.parametrize(
    ("written", "mode", "file_mode"),
    [
        ('"0750"', 0o750, 0o640),
        ('"0770"', 0o770, 0o660),
        ('"700"', 0o700, 0o600),
        ('"0710"', 0o710, 0o600),
    ],
)
def test_log_mode_may_open_logs_to_a_group(
    tmp_path: Path, written: str, mode: int, file_mode: int
) -> None:
    config = load(tmp_path, keeper(f"log_mode = {written}"))
    assert (config.keeper.log_mode, config.keeper.file_mode) == (mode, file_mode)


@pytest.mark.parametrize(
    ("written", "message"),
    [
        (
            '"0755"',
            "'0755' lets every local user read job output and history; "
            'give access to a group instead, e.g. "0750"',
        ),
        ('"0707"', "'0707' lets every local user read job output and history"),
        ('"0600"', "'0600' must keep rwx for the keeper's own user"),
        ("0o750", 'expected an octal mode in quotes like "0700" or "0750", got 488'),
        ('"0o750"', 'expected an octal mode in quotes like "0700" or "0750", got \'0o750\''),
        ('"1750"', "expected an octal mode in quotes"),
        ('"rwxr-x---"', "expected an octal mode in quotes"),
    ],
)
def test_log_mode_refuses_world_bits_and_unclear_modes(
    tmp_path: Path, written: str, message: str
) -> None:
    issue = one_issue(tmp_path, keeper(f"log_mode = {written}"))
    assert (issue.line, issue.key) == (2, "keeper.log_mode")
    assert issue.message.startswith(message)


def test_bounds_table_covers_every_numeric_key() -> None:
    numeric = {
        (section, key)
        for section, key in KEYS
        if key.startswith(("max_", "log_max", "log_backups", "history_"))
        or key in ("every", "timeout", "retries", "retry_delay", "settle", "quarantine_after")
        or key.endswith("_grace")
    }
    assert numeric <= set(BOUNDS)
    assert all(math.isfinite(high) for _, high in BOUNDS.values())
