"""What thousands of jobs hold once instead of once each (issue 15, an idle keeper with
10,000 jobs under 45 MB): equal settings, the empty env and params tables, the schedules
of one trigger; and a job's log, made at its first run rather than at start."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import pytest
from conftest import finish, started_keeper

from watchkeeper.core.config import load_config
from watchkeeper.core.config_table import Shared

TWO_JOBS = """
[jobs.a]
command = ["/bin/echo", "hi"]
cron = "0 * * * *"
every = "1h"

[jobs.b]
command = ["/bin/echo", "hi"]
cron = "0 * * * *"
every = "1h"

[jobs.c]
command = ["/bin/echo", "hi"]
cron = "0 * * * *"
timezone = "Asia/Tokyo"
env = { X = "1" }
params = { who = "world" }
"""


def test_equal_settings_of_different_jobs_are_one_object(make_vault) -> None:
    jobs = load_config(make_vault(TWO_JOBS) / "watchkeeper.toml").jobs
    a, b, c = jobs["a"], jobs["b"], jobs["c"]
    assert a.command == ("/bin/echo", "hi") and a.command is b.command is c.command
    assert a.cron is b.cron is c.cron
    assert a.every == 3600.0 and a.every is b.every


def test_values_equal_across_types_or_signs_stay_apart() -> None:
    shared = Shared()
    assert shared.values({"x": 1.5, "y": "1.5"}) == {"x": 1.5, "y": "1.5"}
    assert shared.values({"z": 1.5})["z"] == 1.5
    assert isinstance(shared.values({"s": "1.5"})["s"], str)
    assert shared.values({"zero": 0.0})["zero"] == 0.0
    assert math.copysign(1.0, shared.values({"neg": -0.0})["neg"]) == -1.0
    assert shared.values({"t": ("a",)})["t"] == ("a",)
    assert shared.values({"mixed": (1, True)})["mixed"] == (1, True)
    assert shared.values({"other": (True, 1)})["other"] == (True, 1)
    assert type(shared.values({"other": (True, 1)})["other"][0]) is bool


def test_jobs_without_env_or_params_share_one_table_that_cannot_be_filled(make_vault) -> None:
    jobs = load_config(make_vault(TWO_JOBS) / "watchkeeper.toml").jobs
    a, b, c = jobs["a"], jobs["b"], jobs["c"]
    assert a.env == {} and a.env is b.env is a.params is b.params
    assert c.env == {"X": "1"} and c.params == {"who": "world"}
    for fill in (
        lambda: a.env.__setitem__("X", "1"),
        lambda: a.env.update(X="1"),
        lambda: a.env.setdefault("X", "1"),
        lambda: a.params.update({"who": "x"}),
    ):
        with pytest.raises(TypeError, match="read-only"):
            fill()
    assert a.env == {} and b.params == {}
    # What `describe --json` prints of them, as it always has.
    assert json.loads(json.dumps(asdict(a)))["env"] == {}


async def test_jobs_with_the_same_trigger_share_their_schedules(make_vault) -> None:
    keeper = await started_keeper(make_vault(TWO_JOBS))
    try:
        a, b, c = keeper.jobs["a"], keeper.jobs["b"], keeper.jobs["c"]
        assert a.schedules is b.schedules and len(a.schedules) == 2
        assert [s.clock for s in a.schedules] == ["wall", "mono"]
        assert [s.clock for s in c.schedules] == ["wall"]  # its own zone: its own schedule
        assert a.next_due is not b.next_due
    finally:
        await finish(keeper)


async def test_a_job_log_is_made_at_its_first_run(make_vault) -> None:
    vault = make_vault(
        """
        [keeper]
        log_max_size = "8KB"
        log_backups = 2

        [jobs.a]
        command = ["/bin/echo", "from a"]

        [jobs.b]
        command = ["/bin/echo", "from b"]
        """
    )
    keeper = await started_keeper(vault)
    try:
        a, b = keeper.jobs["a"], keeper.jobs["b"]
        assert a._log is None and b._log is None
        keeper.run_now("a")
        assert await keeper.wait_idle(10)
        assert a._log is not None and b._log is None
        assert a.log is a._log and (a.log.max_size, a.log.backups) == (8 * 1024, 2)
        assert "from a" in (vault / "Logs" / "jobs" / "a.log").read_text()
        assert not (vault / "Logs" / "jobs" / "b.log").exists()
    finally:
        await finish(keeper)


async def test_a_reload_with_new_log_settings_gives_them_to_changed_jobs(make_vault) -> None:
    vault = make_vault('[jobs.a]\ncommand = ["/bin/true"]\n[jobs.b]\ncommand = ["/bin/true"]\n')
    keeper = await started_keeper(vault)
    try:
        before = keeper.jobs["b"]
        (vault / "watchkeeper.toml").write_text(
            '[keeper]\nlog_max_size = "16KB"\n'
            '[jobs.a]\ncommand = ["/bin/true"]\n[jobs.b]\ncommand = ["/bin/false"]\n'
        )
        assert keeper.reload("test")
        changed = keeper.jobs["b"]
        assert changed is not before and changed.log.max_size == 16 * 1024
        assert keeper.jobs["a"].log.max_size == 5 * 1024 * 1024  # unchanged: as it was
    finally:
        await finish(keeper)
