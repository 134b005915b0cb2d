"""CPU of one Dashboard.md + metrics.prom write (Outputs.refresh) of a real keeper; prints
one JSON line.

    .venv/bin/python bench/outputs_refresh.py [--jobs 100 1000] [--changed 1.0 0.1] [--writes N]

Each case is a started keeper of N hourly /bin/true jobs that have all run once. Before
each measured write, a `changed` share of the jobs runs again (1.0: every job, as at
every1s_N where each job runs once a second and a write comes every 2 s; 0.1: a tenth).
A write's CPU is the process's user+system time (every thread: the vault scan and the
file writes run on threads) across `await outputs.refresh()`; the runs are over by then.
Reported per case: the median, min and max over the writes, in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from fire_lateness import keeper_toml


async def case(jobs: int, changed: float, writes: int) -> dict[str, Any]:
    from watchkeeper.core.config import CONFIG_NAME, load_config
    from watchkeeper.core.daemon import freeze_startup, tune_process
    from watchkeeper.core.keeper import Keeper

    vault = Path(tempfile.mkdtemp(prefix="wk-bench-outputs-"))
    try:
        (vault / CONFIG_NAME).write_text(keeper_toml(jobs, 'every = "1h"'))
        keeper = Keeper(load_config(vault / CONFIG_NAME))
        tune_process()  # as run_daemon() does
        await keeper.start()
        freeze_startup()
        serving = asyncio.create_task(keeper.serve())
        names, outputs = list(keeper.jobs), keeper.outputs
        step = max(1, round(1 / changed))
        cpu_ms = []
        for write in range(writes + 1):  # the first write, after every job's first run, unmeasured
            chosen = names if write == 0 else names[write % step :: step]
            for start in range(0, len(chosen), 200):
                batch = [keeper.run_and_watch(name)[1] for name in chosen[start : start + 200]]
                await asyncio.gather(*batch)
            await keeper.wait_idle(30)
            if outputs._due is not None:  # the write the runs asked for: this bench makes it
                outputs._due.cancel()
                outputs._due = None
            began = time.process_time()
            await outputs.refresh()
            if write:
                cpu_ms.append((time.process_time() - began) * 1000)
        await keeper.stop(grace=5.0)
        await serving
        return {
            "jobs": jobs,
            "changed": changed,
            "writes": writes,
            "cpu_ms_median": round(statistics.median(cpu_ms), 2),
            "cpu_ms_min": round(min(cpu_ms), 2),
            "cpu_ms_max": round(max(cpu_ms), 2),
        }
    finally:
        shutil.rmtree(vault, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--changed", type=float, nargs="+", default=[1.0, 0.1])
    parser.add_argument("--writes", type=int, default=10)
    args = parser.parse_args()
    cases = [
        asyncio.run(case(jobs, changed, args.writes))
        for jobs in args.jobs
        for changed in args.changed
    ]
    print(json.dumps({"bench": "outputs_refresh", "cases": cases}))


if __name__ == "__main__":
    main()
