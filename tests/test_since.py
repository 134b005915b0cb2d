"""`--since` as a duration or a date: values too far back are a usage error, not a traceback."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import run_cli

from watchkeeper.core.since import parse_since

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def test_a_duration_counts_back_from_now() -> None:
    assert parse_since("24h", UTC, NOW) == datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def test_a_date_is_read_in_the_given_zone() -> None:
    assert parse_since("2026-12-01", UTC, NOW) == datetime(2026, 12, 1, tzinfo=UTC)


def test_a_duration_reaching_before_year_one_is_refused() -> None:
    with pytest.raises(ValueError, match="before the year 1"):
        parse_since("99999999999w", UTC, NOW)


@pytest.mark.parametrize("command", ["history", "stats"])
def test_the_cli_says_so_and_exits_2(command: str, make_vault) -> None:
    vault: Path = make_vault('[jobs.a]\ncommand = ["true"]\n')
    result = run_cli(command, "--since", "9999999999999999999999w", "--vault", str(vault))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "--since" in result.stderr and "before the year 1" in result.stderr
