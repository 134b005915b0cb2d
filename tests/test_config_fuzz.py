"""Config fuzz (issue 14): random values for every key, and whole hostile files, through
load_config and through `watchkeeper validate`. Loading raises nothing but ConfigError,
every refusal names a line and key, and whatever is accepted holds the documented bounds."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from config_fuzz import BOUNDS, KEYS, document, hostile_documents, hostile_values
from conftest import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watchkeeper.core.config import CONFIG_NAME, INTERNAL, Config, ConfigError, load_config


def check(path: Path, text: str) -> Config | None:
    """load_config's verdict on `text`, asserting what holds for any input."""
    path.write_text(text, encoding="utf-8")
    try:
        config = load_config(path)
    except ConfigError as error:
        for issue in error.issues:
            assert issue.key != INTERNAL, issue
            assert issue.line > 0, issue
            assert "\n" not in issue.message, issue
        return None
    for (section, key), (low, high) in BOUNDS.items():
        holders = [config.keeper] if section == "keeper" else list(config.jobs.values())
        for holder in holders:
            value = getattr(holder, key)
            if value is not None:
                assert math.isfinite(value) and low <= value <= high, (key, value)
    assert config.keeper.log_mode & ~0o770 == 0 and config.keeper.log_mode & 0o700 == 0o700
    return config


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(key=st.sampled_from(KEYS), value=hostile_values())
def test_any_value_for_any_key_loads_or_is_a_located_error(
    tmp_path: Path, key: tuple[str, str], value: Any
) -> None:
    check(tmp_path / CONFIG_NAME, document(*key, value))


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(values=st.lists(st.tuples(st.sampled_from(KEYS), hostile_values()), max_size=6))
def test_many_hostile_keys_at_once(
    tmp_path: Path, values: list[tuple[tuple[str, str], Any]]
) -> None:
    keeper: dict[str, Any] = {}
    job: dict[str, Any] = {"command": "true"}
    for (section, key), value in values:
        (keeper if section == "keeper" else job)[key] = value
    check(tmp_path / CONFIG_NAME, tomli_w.dumps({"keeper": keeper, "jobs": {"a": job}}))


def test_seeded_hostile_documents(tmp_path: Path) -> None:
    """The stream the chaos bench uses, structural files included."""
    outcomes = [check(tmp_path / CONFIG_NAME, text) for _, text in hostile_documents(14, 300)]
    assert any(outcome is None for outcome in outcomes)


# --- the real CLI ------------------------------------------------------------------------------

_TRACEBACK_CASES = {
    "huge size": '[keeper]\nlog_max_size = "1' + "0" * 400 + 'B"\n',
    "nested 5000 deep": '[jobs.a]\ncommand = "true"\ndescription = ' + "[" * 5000 + "]" * 5000,
    "after chain cycle": "".join(
        f'[jobs.j{i}]\ncommand = "true"\nafter = ["j{(i + 1) % 3000}"]\n' for i in range(3000)
    ),
    "integer of 5000 digits": "[keeper]\nlog_backups = " + "9" * 5000 + "\n",
    "every 1e-300": '[jobs.a]\ncommand = "true"\nevery = 1e-300\n',
    "timeout inf": '[jobs.a]\ncommand = "true"\ntimeout = inf\n',
}


@pytest.mark.parametrize("name", sorted(_TRACEBACK_CASES))
def test_validate_reports_and_exits_2_without_a_traceback(make_vault, name: str) -> None:
    vault = make_vault(_TRACEBACK_CASES[name])
    result = run_cli("validate", "--vault", str(vault))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    config = vault / CONFIG_NAME
    located = re.compile(rf"^{re.escape(str(config))}:[1-9][0-9]*: \S+: \S")
    reported = [line for line in result.stderr.splitlines() if located.match(line)]
    assert reported, result.stderr


def test_validate_accepts_an_after_chain_of_3000_jobs(make_vault) -> None:
    chain = "".join(
        f'[jobs.j{i}]\ncommand = "true"\n' + (f'after = ["j{i + 1}"]\n' if i < 2999 else "")
        for i in range(3000)
    )
    result = run_cli("validate", "--vault", str(make_vault(chain)))
    assert result.returncode == 0, result.stderr
    assert "ok, 3000 job(s)" in result.stdout
