"""Every number the keeper was tuned with, in one place, each with what justified it.

Measured with `bench/fire_lateness.py` on a 2-core box unless said otherwise; the
commit named is where the value came from (`git show <commit>`). Modules read these as
`tuning.NAME` at use time, so a test may patch one here.
"""

from __future__ import annotations

# ---- the scheduling loop (core/slots.py, core/keeper.py) -----------------------------

# A wall-clock sleep is re-checked at least this often, so a clock step delays a cron
# slot by at most this long instead of by the size of the step.
MAX_WALL_SLEEP = 60.0
# A slot is slept for in epoll up to this long before it, the rest in a precise sleep.
# epoll wakes up to a whole millisecond (and the timer slack) after it was asked to: at
# 1 ms one wake in ten came past the slot, making every run of it late (1183d01). A
# timerfd waking the loop on time instead (one wake a slot, not two) measured worse at
# every1s_1000, CPU 36 -> 39% and p99 0.85 -> 1.8 ms: the loop served each exit as it
# came, where the precise sleep leaves them to one batch after the slot's spawn.
FINE_WAIT = 0.002
# Readying a run (record, running line, environment) takes about this long: the loop
# wakes that much earlier again for each run due at the next instant, up to READY_MAX,
# so a pile of slots at one instant is spawned at it rather than readied at it (9af1b15:
# same_instant_1000).
READY_EACH = 0.00005
READY_MAX = 0.25
# A thread waiting for the GIL gets it after this long (Python's default is 5 ms): the
# loop must not wait that long behind a render, nor spawner threads behind the loop
# (1097f4f: p99 of every1s_1000). Set by the entry points (core/daemon.py), not here.
SWITCH_INTERVAL = 0.0001

# ---- runs (core/runs.py) ------------------------------------------------------------

# Runs are handed to the spawner threads at least this many at a time: one history
# write and one queue hand-off per batch instead of per run (1097f4f).
SPAWN_BATCH = 8
# ... and come back from them in one batch, taken on the loop this long a turn at most,
# so a slot falling due meanwhile is not held up behind a thousand (0e406e6)...
STARTED_SLICE = 0.02
# ... and at least this long even when slots are overdue, or runs would never finish
# on a loop that is behind (2713b1d).
STARTED_MIN = 0.002
# Spawning blocks while the vfork'd child execs; a few threads overlap those waits with
# each other and with the loop's own work (66c634d: 4 measured best of 2/4/6).
SPAWN_THREADS = 4
# Job logs stay open between runs (an open per run cost more than the run's other
# writes together, 0cab575); at most this many, and at least OPEN_LOGS_MIN, but never
# more than an eighth of the open-file limit.
OPEN_LOGS = 256
OPEN_LOGS_MIN = 64
# A hook (on_success / on_failure) is ended after this long: hooks notify, they do not work.
HOOK_TIMEOUT = 60.0
# A dependent remembers this many recent waves of its `after` jobs' successes: more
# than a chain's slots that can be in flight at once.
WAVES_KEPT = 32
# Vault changes are counted for the console at most this often: a burst of file events
# costs one folder scan (0cab575).
VAULT_EVENT_INTERVAL = 0.25

# ---- Dashboard.md and metrics.prom (core/outputs.py) ------------------------------------

# Dashboard.md, metrics.prom and vault counts are rewritten at most this often (and at
# most 5% of the loop's time: the interval grows with what a write costs, 2ab7de5).
OUTPUT_INTERVAL = 2.0
# A write starts right after a slot if the next is at most OUTPUT_GAP away...
OUTPUT_GAP = 0.1
# ... waiting out the precise part of that slot's sleep too (74b7c56: every1s_1000 p99
# no longer swings with the machine's load).
AFTER_SLOT = 0.002

# ---- the local executor (core/runner.py) ---------------------------------------------

# One read of a run's output pipe, and what a held-back run keeps in memory at most: the
# pipe's own capacity.
READ_SIZE = 65536
# The longest the spawner holds back what it started while runs wait in its queue: longer
# than a burst of a thousand due runs takes to spawn on 2 CPUs (0.5-0.7 s), and no longer
# than the shortest interval a job is likely to have (ddf3baf: 0.5 s and 2 s measured
# worse on same_instant_1000 and every1s_1000 respectively).
HOLD_MAX = 1.0
# A held-back run's pipe is read ahead once it is this old: a short job is over by then,
# and its closed pipe no longer makes every later spawn dearer (af3c9c2).
READ_AHEAD_AGE = 0.002
# At most this many runs due together are spawned on the loop, one after another (each
# ~0.3 ms); more are a burst, which the threads start in parallel (c71286a).
INLINE_MAX = 3
# A run's output pipe is watched by the loop from this age on. Before, its output waits
# in the pipe, which holds 64 KiB: a run that ends sooner costs no watch at all (9e15895).
OUTPUT_WATCH_AFTER = 0.05
# Reads of a pipe not watched yet when its run's leader exits; leftovers may keep writing
# into it, and the watch (when due) reads on.
EXIT_READS = 4
# A spawn on the loop that took longer than this (a program on a slow file system) sends
# spawns to threads for SLOW_SPAWN_BACKOFF: the loop must not wait for such execs.
SLOW_SPAWN = 0.02
SLOW_SPAWN_BACKOFF = 60.0
