"""Chaos run against a real `watchkeeper --daemon`: the Promises of DESIGN.md under abuse.
Prints one JSON line of figures; exits 1 when an invariant failed (listed in "problems").

    .venv/bin/python bench/chaos.py [--quick] [--kills N] [--variants N] [--seed S] [--keep]
                                    [--phases kill,disk,config,socket]

Phases, each on its own fresh vault in a temporary folder:

- kill: SIGKILL at N random moments (default 100; some while the keeper is still starting)
  under load: eleven jobs (interval, cron with seconds, queued slow runs, a timeout with a
  child left behind, retries, a per-job quota, an `after` chain with a hook, two `on_files`
  jobs) and a writer dropping files into Inbox/, restarting the keeper each time, then a
  clean stop. Checked: every run has exactly one final record (history folded by id; none
  left `running`, and every run the job commands saw start has its record), no process of
  any run is left (found in /proc by the run environment and the argv marker), each
  dropped file has a final outcome in Logs/files.jsonl, no 60-minute window over a quota.
- disk: Logs/ on a small tmpfs (root only; skipped with a note otherwise) filled up for
  ~10 s while runs happen, then freed. Checked: the keeper stays up, every run that
  started has its final record once space returns, every file dropped meanwhile an
  outcome.
- config: random config variants (hostile values for every key, broken TOML, deep
  nesting, long `after` chains, paths out of the vault, an env_file with a secret on a
  malformed line) through `watchkeeper validate` and through live reload (SIGHUP) of a
  running keeper. Checked: validate exits 0 or 2 without a traceback; every reload is
  answered (reloaded or refused); the keeper stays up and answers `status`; afterwards a
  good config still reloads, runs its jobs and hands files; the secret appears nowhere.
- socket: malformed and oversized lines, hundreds of idle and half-open clients, a crowd
  connecting at once, a subscriber that never reads, while a fresh `status` is asked every
  100 ms. Checked: every probe answered within 5 s; the keeper stays up.

--quick is a smoke run of a few minutes (10 kills, short windows, fewer variants and
clients); the full run takes about half an hour on 2 CPUs. Needs Linux (/proc, Unix
sockets); run it as root for the disk phase. --keep leaves the work folder for a look.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import chaos_config
import chaos_disk
import chaos_kill
import chaos_kit
import chaos_socket

PHASES: dict[str, Callable[[Path, argparse.Namespace, random.Random], dict[str, Any]]] = {
    "kill": lambda work, args, rng: chaos_kill.run(work, args.kills, args.quick, rng),
    "disk": lambda work, args, rng: chaos_disk.run(work, args.quick, rng),
    "config": lambda work, args, rng: chaos_config.run(work, args.variants, rng),
    "socket": lambda work, args, rng: chaos_socket.run(work, args.quick, rng),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few minutes")
    parser.add_argument("--kills", type=int, help="kill -9 count (default 100, --quick 10)")
    parser.add_argument("--variants", type=int, help="config variants (default 1500, --quick 60)")
    parser.add_argument("--phases", default=",".join(PHASES), help="comma-separated subset")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    if args.kills is None:
        args.kills = 10 if args.quick else 100
    if args.variants is None:
        args.variants = 60 if args.quick else 1500
    phases = [name.strip() for name in args.phases.split(",") if name.strip()]
    unknown = [name for name in phases if name not in PHASES]
    if unknown:
        parser.error(f"unknown phase(s) {', '.join(unknown)}; phases: {', '.join(PHASES)}")
    # The crowds of the socket phase are clients of this process; the keeper itself is
    # started with the usual limit (chaos_kit.KEEPER_FDS).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 16384)), hard))

    work = Path(tempfile.mkdtemp(prefix="wk-chaos-"))
    result: dict[str, Any] = {"quick": args.quick, "seed": args.seed, "work": str(work)}
    problems: list[str] = []
    began = time.monotonic()
    try:
        for name in phases:
            started = time.monotonic()
            try:
                figures = PHASES[name](work, args, random.Random(f"{args.seed}-{name}"))
            except Exception as error:  # a harness failure: reported, the other phases go on
                chaos_kit.Daemon.kill_all()
                crash = traceback.format_exc(limit=4)
                figures = {"crashed": crash, "problems": [f"the phase crashed: {error!r}"]}
            figures["seconds"] = round(time.monotonic() - started, 1)
            problems += [f"{name}: {problem}" for problem in figures.pop("problems")]
            result[name] = figures
    finally:
        chaos_kit.Daemon.kill_all()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    result["seconds"] = round(time.monotonic() - began, 1)
    result["problems"] = problems
    result["ok"] = not problems
    print(json.dumps(result))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
