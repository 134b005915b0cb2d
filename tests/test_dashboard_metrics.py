"""Dashboard.md, Logs/metrics.prom and the atomic writes behind both."""

from __future__ import annotations

import math
import os
import random
import re
import stat
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from watchkeeper.core.atomic import write_atomic
from watchkeeper.core.dashboard import dashboard_lines, write_dashboard
from watchkeeper.core.history import RunRecord, iso
from watchkeeper.core.metrics import Metrics, write_metrics
from watchkeeper.core.slices import text_of
from watchkeeper.core.vault import FolderSummary

NOW = datetime(2025, 3, 30, 8, 0, 0, tzinfo=UTC)
KOLKATA = ZoneInfo("Asia/Kolkata")  # +05:30 all year: local times are easy to predict
HOSTILE_FILE = "a|b\nc [[x]] #tag.md"
HOSTILE_ERROR = "exit 1 | boom\nTraceback: `x` *y* <b>"
HOSTILE_LABEL = 'a"b\\c\nd'


# ---- helpers --------------------------------------------------------------------------


def record(
    run_id: str,
    job: str,
    status: str,
    started: datetime,
    duration_ms: int | None = 1500,
    error: str | None = None,
) -> RunRecord:
    done = None if status == "running" else started + timedelta(milliseconds=duration_ms or 0)
    return RunRecord(
        id=run_id,
        job=job,
        project="vault",
        started_at=started,
        status=status,
        trigger="schedule",
        host="box",
        completed_at=done,
        duration_ms=None if status == "running" else duration_ms,
        error=error,
    )


def snapshot(**extra: object) -> dict:
    last_ok = record("r1", "alpha", "success", NOW - timedelta(minutes=3))
    last_bad = record("r2", "beta", "failure", NOW - timedelta(minutes=9), error="exit 2")
    return {
        "vault": "/srv/work/my-vault",
        "state": "RUNNING",
        "pid": 4242,
        "host": "box",
        "started_at": "2025-03-30T06:00:00.000+00:00",
        "uptime_s": 7380.0,
        "paused": False,
        "running": 1,
        "waiting": 0,
        "today": {"ok": 12, "failed": 3},
        "jobs": [
            {
                "name": "alpha",
                "trigger": "every 5m",
                "enabled": True,
                "paused": False,
                "next_run": (NOW + timedelta(minutes=2)).astimezone(KOLKATA).isoformat(),
                "last": last_ok.to_json(),
                "running": [],
                "queued": 0,
            },
            {
                "name": "beta",
                "trigger": "cron 0 3 * * *",
                "enabled": True,
                "paused": True,
                "next_run": None,
                "last": last_bad.to_json(),
                "running": [{"id": "r9", "pid": 77, "trigger": "manual", "elapsed_s": 12.0}],
                "queued": 0,
            },
            {
                "name": "gamma",
                "trigger": "manual",
                "enabled": False,
                "paused": False,
                "next_run": None,
                "last": None,
                "running": [],
                "queued": 0,
            },
        ],
        **extra,
    }


FOLDERS = [
    FolderSummary("Inbox", 2, (HOSTILE_FILE, "plain.md")),
    FolderSummary("Needs_Action", 0, ()),
    FolderSummary("Plans", 1, ("plan.md",)),
    FolderSummary("Done", 40, ("done-1.md",)),
]


def split_row(line: str) -> list[str]:
    """Cells of a Markdown table row, splitting only on unescaped pipes, as GFM does."""
    assert line.startswith("| ") and line.endswith(" |"), line
    cells, current, chars = [], "", iter(line[1:-1])
    for char in chars:
        if char == "\\":
            current += char + next(chars)
        elif char == "|":
            cells.append(current.strip())
            current = ""
        else:
            current += char
    cells.append(current.strip())
    return cells


def unescape(cell: str) -> str:
    return re.sub(r"\\(.)", r"\1", cell)


def tables(text: str) -> dict[str, list[dict[str, str]]]:
    """Each table under its '## ' heading, as rows of header -> unescaped cell."""
    found: dict[str, list[dict[str, str]]] = {}
    heading, block = "", []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append(line)
            continue
        if block:
            header = split_row(block[0])
            assert set(block[1]) <= {"|", "-"}, block[1]
            rows = [split_row(row) for row in block[2:]]
            for row in rows:
                assert len(row) == len(header), (header, row)
            found[heading] = [dict(zip(header, map(unescape, row), strict=True)) for row in rows]
            block = []
        if line.startswith("## "):
            heading = line[3:]
    return found


def render(tz=KOLKATA, snap: dict | None = None, recent=None, failures=None) -> str:
    if recent is None:
        recent = [
            record(f"s{i}", "alpha", status, NOW - timedelta(minutes=i + 1))
            for i, status in enumerate(
                ["success", "failure", "timeout", "skipped", "cancelled", "interrupted"]
            )
        ]
        recent.append(record("run", "beta", "running", NOW - timedelta(seconds=30)))
    if failures is None:
        failures = [record("f1", "beta", "failure", NOW - timedelta(hours=1), error=HOSTILE_ERROR)]
    lines = dashboard_lines(snap or snapshot(), FOLDERS, recent, failures, tz, NOW)
    return "\n".join(lines) + "\n"


# ---- dashboard --------------------------------------------------------------------------


def test_dashboard_has_state_folders_jobs_runs_and_failures() -> None:
    text = render()
    assert text.startswith("# watchkeeper — my-vault\n")
    assert "**RUNNING** · pid 4242 on box · up 2h03m" in text
    assert "Today: ✔ 12 ok · ✘ 3 failed · ▶ 1 running" in text
    found = tables(text)
    assert set(found) == {"Vault", "Jobs", "Last 10 runs", "Failures, last 24 h"}

    folders = {row["Folder"]: row for row in found["Vault"]}
    assert list(folders) == ["Inbox", "Needs_Action", "Plans", "Done"]
    assert folders["Done"]["Files"] == "40"
    assert folders["Plans"]["Newest"] == "plan.md"

    jobs = {row["Job"]: row for row in found["Jobs"]}
    assert jobs["alpha"]["Trigger"] == "every 5m"
    assert jobs["alpha"]["Next run"] == "13:32:00 (in 2m00s)"
    assert jobs["alpha"]["Last result"] == "✔ success 13:27:01"
    assert jobs["alpha"]["Paused"] == "no"
    assert jobs["beta"]["Last result"] == "▶ running 12s; last ✘ failure 13:21:01"
    assert jobs["beta"]["Paused"] == "yes"
    assert jobs["gamma"]["Last result"] == "—"
    assert jobs["gamma"]["Paused"] == "disabled"

    runs = found["Last 10 runs"]
    assert [row["Status"] for row in runs] == [
        "▶ running",
        "✔ success",
        "✘ failure",
        "⧗ timeout",
        "↷ skipped",
        "■ cancelled",
        "⚡ interrupted",
    ]
    assert runs[0]["Duration"] == "30s"  # a running run shows how long it has run so far
    assert runs[1]["Duration"] == "1.5s"
    assert "Quota" not in text


def test_hostile_file_names_and_errors_stay_inside_their_cells() -> None:
    text = render()
    found = tables(text)
    inbox = found["Vault"][0]
    assert inbox["Newest"] == "a|b ↵ c [[x]] #tag.md · plain.md"
    [failure] = found["Failures, last 24 h"]
    assert failure["Error"] == "exit 1 | boom ↵ Traceback: `x` *y* <b>"
    assert failure["Status"] == "✘ failure"
    # Escaped in the raw text: no link, tag, emphasis, code span or HTML reaches the renderer.
    assert r"a\|b ↵ c \[\[x\]\] \#tag.md" in text
    assert r"exit 1 \| boom ↵ Traceback: \`x\` \*y\* \<b\>" in text
    controls = render(failures=[record("f", "beta", "failure", NOW, error="\x1b[31mred\tx\x00")])
    assert tables(controls)["Failures, last 24 h"][0]["Error"] == "\ufffd[31mred x\ufffd"
    # A file name that is not UTF-8 (its bytes as lone surrogates) reaches an error text:
    # the Dashboard shows U+FFFD for each such byte and stays writable as UTF-8.
    latin = render(failures=[record("g", "beta", "failure", NOW, error="cannot read caf\udce9")])
    assert tables(latin)["Failures, last 24 h"][0]["Error"] == "cannot read caf\ufffd"
    latin.encode("utf-8")


def test_dashboard_times_are_in_the_given_zone() -> None:
    kolkata = render(KOLKATA)
    assert "updated 2025-03-30 13:30:00 IST\n" in kolkata
    assert tables(kolkata)["Failures, last 24 h"][0]["Started"] == "12:30:00"
    new_york = render(ZoneInfo("America/New_York"))
    assert "updated 2025-03-30 04:00:00 EDT\n" in new_york
    assert tables(new_york)["Failures, last 24 h"][0]["Started"] == "03:00:00"
    # A run from another local day carries its date.
    old = record("old", "alpha", "success", NOW - timedelta(hours=20))
    assert tables(render(KOLKATA, recent=[old]))["Last 10 runs"][0]["Started"] == (
        "2025-03-29 17:30"
    )


def test_last_runs_capped_newest_first_and_failures_limited_to_a_day() -> None:
    recent = [record(f"r{i}", "alpha", "success", NOW - timedelta(minutes=i)) for i in range(30)]
    random.Random(1).shuffle(recent)
    failures = [
        record("new", "alpha", "failure", NOW - timedelta(hours=2)),
        record("edge", "alpha", "timeout", NOW - timedelta(hours=23, minutes=59)),
        record("stale", "alpha", "failure", NOW - timedelta(hours=25)),
    ]
    found = tables(render(recent=recent, failures=failures))
    started = [row["Started"] for row in found["Last 10 runs"]]
    assert started == [
        (NOW - timedelta(minutes=i)).astimezone(KOLKATA).strftime("%H:%M:%S") for i in range(10)
    ]
    assert [row["Status"] for row in found["Failures, last 24 h"]] == ["✘ failure", "⧗ timeout"]

    empty = render(recent=[], failures=failures[2:])
    assert "No runs yet." in empty
    assert "No failures in the last 24 h." in empty


def test_quota_table_when_the_snapshot_has_one() -> None:
    quota = [
        {"scope": "global", "used": 7, "limit": 60, "next_free": iso(NOW + timedelta(minutes=4))},
        {"scope": "triage", "used": 3, "limit": 0, "next_free": None},
    ]
    found = tables(render(snap=snapshot(quota=quota)))
    assert found["Quota"] == [
        {"Scope": "global", "Used": "7", "Limit": "60", "Next slot frees": "13:34:00 (in 4m00s)"},
        {"Scope": "triage", "Used": "3", "Limit": "unlimited", "Next slot frees": "—"},
    ]


def test_write_dashboard_replaces_the_vault_file(tmp_path: Path) -> None:
    write_dashboard(tmp_path, "old\n")
    text = render()
    write_dashboard(tmp_path, text)
    assert (tmp_path / "Dashboard.md").read_text(encoding="utf-8") == text
    assert sorted(os.listdir(tmp_path)) == ["Dashboard.md"]


# ---- atomic writes ---------------------------------------------------------------------


def test_write_atomic_replaces_content_leaves_no_temp_and_takes_the_umask(
    tmp_path: Path,
) -> None:
    target = tmp_path / "file.txt"
    target.write_text("before")
    old_umask = os.umask(0o077)
    try:
        write_atomic(target, "after ✔\n")  # Dashboard.md: as any new note in the vault
    finally:
        os.umask(old_umask)
    assert target.read_text(encoding="utf-8") == "after ✔\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["file.txt"]


def test_write_atomic_into_a_missing_directory_raises_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "missing" / "file.txt", "x")
    assert os.listdir(tmp_path) == []


def test_write_atomic_failing_mid_write_keeps_the_old_file_and_removes_the_temp(
    tmp_path: Path,
) -> None:
    target = tmp_path / "file.txt"
    target.write_text("before")
    with pytest.raises(UnicodeEncodeError):
        write_atomic(target, "half \ud800 written")  # a lone surrogate cannot be UTF-8
    assert target.read_text() == "before"
    assert os.listdir(tmp_path) == ["file.txt"]


def test_write_atomic_failing_at_the_rename_removes_the_temp(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    with pytest.raises(IsADirectoryError):
        write_atomic(tmp_path / "taken", "x")
    assert os.listdir(tmp_path) == ["taken"]


# ---- metrics ---------------------------------------------------------------------------

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"'
SAMPLE = re.compile(rf"({NAME})(?:\{{((?:{LABEL})(?:,{LABEL})*)\}})? (\S+)")
VALUE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|NaN|[+-]Inf")
HELP = re.compile(rf"# HELP ({NAME}) (.*)")
TYPE = re.compile(rf"# TYPE ({NAME}) (counter|gauge|summary|histogram|untyped)")


def parse_exposition(text: str) -> dict[str, dict]:
    """A strict reader of text format 0.0.4 as this project writes it: HELP then TYPE
    before each family's samples, families contiguous, no duplicate series."""
    assert text.endswith("\n")
    families: dict[str, dict] = {}
    current: dict | None = None
    seen: set[tuple] = set()
    for line in text[:-1].split("\n"):
        if match := HELP.fullmatch(line):
            assert match[1] not in families, f"family {match[1]} twice"
            current = families[match[1]] = {"help": match[2], "type": None, "samples": []}
            continue
        if match := TYPE.fullmatch(line):
            assert current is families.get(match[1]) and current["type"] is None, line
            assert not current["samples"], line
            current["type"] = match[2]
            continue
        match = SAMPLE.fullmatch(line)
        assert match, f"not a sample line: {line!r}"
        assert VALUE.fullmatch(match[match.lastindex]), line
        name = match[1]
        assert current is not None and current["type"] is not None, line
        family = next(iter(k for k, v in families.items() if v is current))
        allowed = {family}
        if current["type"] == "summary":
            allowed |= {family + "_sum", family + "_count"}
        assert name in allowed, f"{name} outside its family {family}"
        labels = {}
        if match[2]:
            for label in re.finditer(LABEL, match[2]):
                value = re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], label[2])
                labels[label[1]] = value
        key = (name, tuple(sorted(labels.items())))
        assert key not in seen, f"duplicate series {key}"
        seen.add(key)
        value = match[match.lastindex]
        current["samples"].append((name, labels, float(value.replace("Inf", "inf"))))
    return families


def series(families: dict, family: str, name: str | None = None) -> dict[tuple, float]:
    return {
        tuple(sorted(labels.items())): value
        for sample, labels, value in families[family]["samples"]
        if sample == (name or family)
    }


def test_metrics_text_is_valid_exposition_with_every_family() -> None:
    metrics = Metrics()
    metrics.observe_run("alpha", "success", 1200, 1_711_800_000.5)
    metrics.observe_run(HOSTILE_LABEL, "failure", 300, 1_711_800_001.0)
    quota = [
        {"scope": "global", "used": 7, "limit": 60, "next_free": None},
        {"scope": "triage", "used": 2, "limit": 0, "next_free": None},
    ]
    text = text_of(metrics.lines(snapshot(quota=quota), FOLDERS))
    families = parse_exposition(text)
    assert {name: family["type"] for name, family in families.items()} == {
        "watchkeeper_runs_total": "counter",
        "watchkeeper_last_success_timestamp_seconds": "gauge",
        "watchkeeper_run_duration_seconds": "summary",
        "watchkeeper_quota_used": "gauge",
        "watchkeeper_quota_limit": "gauge",
        "watchkeeper_vault_files": "gauge",
        "watchkeeper_running_runs": "gauge",
        "watchkeeper_up": "gauge",
        "watchkeeper_keeper_start_time_seconds": "gauge",
    }
    assert all(family["help"] for family in families.values())
    # The label escaping round-trips, and is written exactly as the format spells it.
    assert 'watchkeeper_runs_total{job_name="a\\"b\\\\c\\nd",status="failure"} 1\n' in text
    assert series(families, "watchkeeper_runs_total") == {
        (("job_name", "alpha"), ("status", "success")): 1,
        (("job_name", HOSTILE_LABEL), ("status", "failure")): 1,
    }
    assert series(families, "watchkeeper_last_success_timestamp_seconds") == {
        (("job_name", "alpha"),): 1_711_800_000.5
    }
    assert series(families, "watchkeeper_quota_used") == {
        (("scope", "global"),): 7,
        (("scope", "triage"),): 2,
    }
    assert series(families, "watchkeeper_quota_limit") == {
        (("scope", "global"),): 60,
        (("scope", "triage"),): math.inf,
    }
    assert series(families, "watchkeeper_vault_files")[(("folder", "Done"),)] == 40
    assert series(families, "watchkeeper_running_runs") == {(): 1}
    assert series(families, "watchkeeper_up") == {(): 1}
    assert series(families, "watchkeeper_keeper_start_time_seconds") == {
        (): datetime(2025, 3, 30, 6, tzinfo=UTC).timestamp()
    }


def test_metrics_before_any_run_still_parse() -> None:
    families = parse_exposition(text_of(Metrics().lines({"running": 0}, [])))
    assert families["watchkeeper_runs_total"]["samples"] == []
    assert "watchkeeper_quota_used" in families


def test_counters_and_duration_sums_add_up() -> None:
    rng = random.Random(7)
    metrics = Metrics()
    expected: Counter[tuple[str, str]] = Counter()
    durations: dict[str, list[int]] = {}
    last_success: dict[str, float] = {}
    for index in range(5000):
        job = rng.choice(["alpha", "beta", "gamma"])
        status = rng.choice(["success", "failure", "timeout", "skipped", "cancelled"])
        duration = rng.randrange(0, 60_000)
        moment = 1_700_000_000 + index
        metrics.observe_run(job, status, duration, moment)
        expected[job, status] += 1
        if status != "skipped":  # never ran: counted, but no duration
            durations.setdefault(job, []).append(duration)
        if status == "success":
            last_success[job] = moment
    families = parse_exposition(text_of(metrics.lines({"running": 0}, FOLDERS)))
    runs = series(families, "watchkeeper_runs_total")
    assert runs == {(("job_name", j), ("status", s)): n for (j, s), n in expected.items()}
    assert sum(runs.values()) == 5000
    family = "watchkeeper_run_duration_seconds"
    counts = series(families, family, family + "_count")
    sums = series(families, family, family + "_sum")
    for job, values in durations.items():
        assert counts[(("job_name", job),)] == len(values)
        assert sums[(("job_name", job),)] == pytest.approx(sum(values) / 1000)
    assert series(families, "watchkeeper_last_success_timestamp_seconds") == {
        (("job_name", job),): moment for job, moment in last_success.items()
    }


def test_quantiles_on_a_known_dataset_and_a_bounded_reservoir() -> None:
    metrics = Metrics()
    seconds = list(range(1, 101))
    random.Random(3).shuffle(seconds)
    for value in seconds:
        metrics.observe_run("small", "success", value * 1000, 0.0)
    for value in range(1, 8):  # 7 values: nearest rank rounds up, ranks 4 and 7
        metrics.observe_run("odd", "success", value * 1000, 0.0)
    for value in range(1, 1501):  # only the last 1,000 (501..1500) feed the quantiles
        metrics.observe_run("big", "success", value * 1000, 0.0)
    family = "watchkeeper_run_duration_seconds"
    families = parse_exposition(text_of(metrics.lines({}, [])))
    quantiles = series(families, family)
    assert quantiles[(("job_name", "small"), ("quantile", "0.5"))] == 50.0
    assert quantiles[(("job_name", "small"), ("quantile", "0.95"))] == 95.0
    assert quantiles[(("job_name", "odd"), ("quantile", "0.5"))] == 4.0
    assert quantiles[(("job_name", "odd"), ("quantile", "0.95"))] == 7.0
    assert quantiles[(("job_name", "big"), ("quantile", "0.5"))] == 1000.0
    assert quantiles[(("job_name", "big"), ("quantile", "0.95"))] == 1450.0
    assert series(families, family, family + "_count")[(("job_name", "big"),)] == 1500
    assert series(families, family, family + "_sum")[(("job_name", "big"),)] == 1500 * 1501 / 2

    # A later run moves the quantiles on (no stale cache).
    for _ in range(100):
        metrics.observe_run("small", "success", 1000_000, 0.0)
    again = series(parse_exposition(text_of(metrics.lines({}, []))), family)
    assert again[(("job_name", "small"), ("quantile", "0.95"))] == 1000.0


def test_write_metrics_lands_in_logs_readable_by_node_exporter(tmp_path: Path) -> None:
    (tmp_path / "Logs").mkdir()
    os.chmod(tmp_path / "Logs", 0o750)  # log_mode "0750" lets node_exporter's group in
    text = text_of(Metrics().lines({"running": 0}, FOLDERS))
    write_metrics(tmp_path, text)
    target = tmp_path / "Logs" / "metrics.prom"
    assert target.read_text(encoding="utf-8") == text
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert os.listdir(tmp_path / "Logs") == ["metrics.prom"]
