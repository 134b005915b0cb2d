"""What a keeper holds per job while it waits (issue 15: idle with 10,000 hourly jobs under
45 MB RSS; bench/fire_lateness.py idle_10000_hourly measures the whole process). Here the
parts of it this project makes, counted by tracemalloc, which on one Python gives the same
numbers on every machine: the config's peak while it is read, what it keeps, and what the
keeper's job table adds. Before issue 15 they were ~1,950, ~700 and ~660 bytes a job."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

from watchkeeper.core.config import parse_config
from watchkeeper.core.jobtable import JobTable
from watchkeeper.core.seams import SystemClock
from watchkeeper.core.slots import Slots

JOBS = 2000


def hourly_jobs(count: int) -> str:
    head = "[keeper]\nmax_parallel = 4\n\n"
    return head + "".join(
        f'[jobs.j{i:05d}]\ncommand = ["/bin/true"]\nevery = "1h"\n\n' for i in range(count)
    )


def test_a_config_of_hourly_jobs_and_its_job_table_stay_small(tmp_path: Path) -> None:
    text = hourly_jobs(JOBS)
    tracemalloc.start()
    try:
        config = parse_config(text, tmp_path / "watchkeeper.toml")
        config_live, read_peak = tracemalloc.get_traced_memory()
        table = JobTable(config, Slots(SystemClock()), lambda path, error: None)
        table.lay_out()
        table_live = tracemalloc.get_traced_memory()[0] - config_live
    finally:
        tracemalloc.stop()
    assert len(table.jobs) == JOBS
    per_job = {"read peak": read_peak, "config": config_live, "job table": table_live}
    per_job = {what: size // JOBS for what, size in per_job.items()}
    assert per_job["read peak"] < 1600, per_job
    assert per_job["config"] < 560, per_job
    assert per_job["job table"] < 580, per_job


def test_a_started_keeper_without_file_jobs_has_not_imported_hashlib(make_vault) -> None:
    """hashlib (OpenSSL's digests, ~0.6 MB) is for the content of files handed to jobs."""
    vault = make_vault('[jobs.a]\ncommand = ["/bin/true"]\nevery = "1h"\n')
    script = textwrap.dedent(
        f"""
        import asyncio, json, sys
        from pathlib import Path
        from watchkeeper.core.config import load_config
        from watchkeeper.core.daemon import freeze_startup, tune_process
        from watchkeeper.core.keeper import Keeper

        async def main():
            keeper = Keeper(load_config(Path({str(vault)!r}) / "watchkeeper.toml"))
            tune_process()
            await keeper.start()
            freeze_startup()
            modules = sorted(sys.modules)
            await keeper.stop(grace=5.0)
            print(json.dumps(modules))

        asyncio.run(main())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    modules = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert "watchkeeper.core.ledger" in modules
    assert "hashlib" not in modules and "_hashlib" not in modules


def test_freeze_startup_gives_back_what_starting_freed() -> None:
    """What a keeper frees while it starts sits between what it keeps: glibc returns it
    to the system only when asked (malloc_trim). Elsewhere there is nothing to ask."""
    script = textwrap.dedent(
        """
        import ctypes, json, sys
        from watchkeeper.core.daemon import freeze_startup

        def rss_kb():
            for line in open("/proc/self/status"):
                if line.startswith("VmRSS"):
                    return int(line.split()[1])

        if getattr(ctypes.CDLL(None), "malloc_trim", None) is None:
            print(json.dumps(None))
            sys.exit()
        # Past the small-object allocator, on malloc's own heap: freed, then one kept
        # after it, so that freeing cannot simply shrink the heap from its top.
        freed = [bytes(1000) for _ in range(20_000)]
        kept = bytes(1000)
        del freed
        before = rss_kb()
        freeze_startup()
        print(json.dumps(before - rss_kb()))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    given_back_kb = json.loads(result.stdout.strip().splitlines()[-1])
    if given_back_kb is None:
        return  # no malloc_trim in this C library
    assert given_back_kb > 10_000
