"""The console's pieces on their own: text layout, wording, the model's bookkeeping, the
event bridge, and the private Textual names the console leans on (why textual is pinned)."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path

from textual.app import App
from textual.screen import Screen
from textual.widgets import DataTable
from textual.widgets.data_table import Column

from watchkeeper.core.events import Event
from watchkeeper.tui.messages import KeeperBridge, LogLines, Resync, RunStarted
from watchkeeper.tui.model import Model
from watchkeeper.tui.operations import editor_command
from watchkeeper.tui.runlog import run_output
from watchkeeper.tui.text import Clock, log_display, run_time
from watchkeeper.tui.widgets.log_view import cuts
from watchkeeper.tui.widgets.vault_pane import items_shown

NOW = datetime(2030, 1, 9, 12, 0, 0, tzinfo=UTC)


def test_textual_private_names_the_console_relies_on_still_exist() -> None:
    """textual is pinned because of these: a new version must keep them, or the console
    (and its tests) change with it."""
    # tui/widgets/table.py: dropping a table's dead renders, and setting column widths.
    assert callable(DataTable._clear_caches)
    assert {"width", "label"} <= {field.name for field in fields(Column)}
    # The tests read the screen as a terminal would, and the notices shown.
    assert hasattr(Screen(), "_compositor")
    assert hasattr(App, "_background_screens")
    assert hasattr(App(), "_notifications")
    assert hasattr(DataTable(), "_cell_render_cache")


def test_wrapped_rows_break_after_a_word_and_keep_wide_characters_whole() -> None:
    line = "19:27:10 run 1a24cd311df-1f9de8 of task-planner started (after, pid 8883)"
    starts = cuts(line, 47, 45)
    rows = [line[a:b] for a, b in zip(starts, [*starts[1:], len(line)], strict=True)]
    assert rows == ["19:27:10 run 1a24cd311df-1f9de8 of task-planner ", "started (after, pid 8883)"]
    assert cuts("x" * 100, 47, 45) == [0, 47, 92]  # one long word: cut where it must
    assert cuts("日本語" * 10, 7, 5) == [0, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29]


def test_the_log_shows_the_level_only_when_it_is_not_info() -> None:
    clock = Clock(UTC, NOW)
    info = "2030-01-09T11:59:58.123+00:00 INFO  run abc of job success in 3ms"
    error = "2030-01-09T11:59:58.123+00:00 ERROR run abc of job: cannot start"
    job_line = "2030-01-09T11:59:58.123+00:00 [abc] INFO from the job itself"
    assert log_display(info, clock) == "11:59:58 run abc of job success in 3ms"
    assert log_display(error, clock) == "11:59:58 ERROR run abc of job: cannot start"
    assert log_display(job_line, clock) == "11:59:58 [abc] INFO from the job itself"


def test_run_times_fit_nine_cells() -> None:
    clock = Clock(UTC, NOW)
    assert run_time(NOW - timedelta(minutes=5), clock) == "11:55:00"
    assert run_time(NOW - timedelta(days=2), clock) == "Mon 12:00"
    assert run_time(NOW - timedelta(days=40), clock) == "Nov 30"


def test_vault_items_fill_the_room_one_folder_at_a_time() -> None:
    folders = {"Inbox": (3, ("a", "b", "c")), "Plans": (1, ("p",))}
    assert items_shown(folders, 4) == {"Inbox": 0, "Needs_Action": 0, "Plans": 0, "Done": 0}
    assert items_shown(folders, 6) == {"Inbox": 1, "Needs_Action": 0, "Plans": 1, "Done": 0}
    assert items_shown(folders, 20) == {"Inbox": 3, "Needs_Action": 0, "Plans": 1, "Done": 0}


def test_editor_is_visual_then_editor_with_its_arguments(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.delenv("EDITOR", raising=False)
    assert editor_command(tmp_path / "x.md") is None
    monkeypatch.setenv("EDITOR", "vi")
    assert editor_command(tmp_path / "x.md") == ["vi", str(tmp_path / "x.md")]
    monkeypatch.setenv("VISUAL", "code --wait")
    assert editor_command(tmp_path / "x.md") == ["code", "--wait", str(tmp_path / "x.md")]


def record(run_id: str, job: str, status: str, minute: int) -> dict:
    started = (NOW + timedelta(minutes=minute)).isoformat()
    return {"id": run_id, "taskId": job, "status": status, "startedAt": started}


def test_a_start_counts_against_the_quota_at_once_and_a_stale_snapshot_takes_nothing_back(
    tmp_path: Path,
) -> None:
    model = Model(tmp_path)
    quota = [{"scope": "global", "used": 1, "limit": 0}, {"scope": "a", "used": 1, "limit": 5}]
    model.load_snapshot({"quota": quota, "runs_last_hour": 1, "jobs": []}, NOW)
    asked_at = model.counted  # a snapshot is asked for ...
    model.apply("run_started", record("r2", "a", "running", 1), NOW)
    model.apply("run_started", record("r3", "b", "running", 1), NOW)
    usage = {row["scope"]: row["used"] for row in model.quota}
    assert usage == {"global": 3, "a": 2, "b": 1} and model.runs_last_hour == 3
    # ... and arrives, taken before those starts: it leaves the counts alone.
    stale = {"quota": quota, "runs_last_hour": 1, "today": {"ok": 0, "failed": 0}, "jobs": []}
    model.load_snapshot(stale, NOW, set(), asked_at)
    assert {row["scope"]: row["used"] for row in model.quota} == usage
    model.apply("quota", {"usage": [{"scope": "global", "used": 3, "limit": 0}]}, NOW)
    assert model.quota == [{"scope": "global", "used": 3, "limit": 0}]


def test_a_good_reload_clears_the_refused_one(tmp_path: Path) -> None:
    model = Model(tmp_path)
    model.apply("config_error", {"issues": ["watchkeeper.toml:3: command: bad"]}, NOW)
    assert model.config_issues
    model.apply("config_reloaded", {"jobs": 2}, NOW)
    assert model.config_issues == [] and "header" in model.dirty


def test_run_output_picks_one_runs_lines_across_rotations(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    t = "2024-05-01T10:00:0{}.000+00:00"
    (tmp_path / "job.log.1").write_text(
        f"{t.format(0)} [aaa] ▶ started\n{t.format(1)} [aaa] first\n{t.format(1)} [bbb] other\n"
    )
    log.write_text(f"{t.format(2)} [aaa] second\n{t.format(3)} [bbb] more\n")
    output = run_output(log, "aaa", datetime(2024, 5, 1, 10, 0, tzinfo=UTC))
    assert [line.split(" ", 1)[1] for line in output.lines] == ["▶ started", "first", "second"]
    assert not output.truncated


class Recorder:
    """Stands in for the app: keeps what the bridge posts."""

    def __init__(self) -> None:
        self.messages: list[object] = []

    def post_message(self, message: object) -> bool:
        self.messages.append(message)
        return True


def test_bridge_bounds_what_waits_and_resyncs_after_dropping() -> None:
    target = Recorder()
    bridge = KeeperBridge(target, limit=3)  # type: ignore[arg-type]
    for index in range(10):
        bridge.on_event(Event("run_started", {"id": str(index)}))
    assert [type(message) for message in target.messages] == [RunStarted] * 3
    assert bridge.dropped == 7
    for _ in range(3):
        bridge.handled()
    assert isinstance(target.messages[-1], Resync)
    # Log lines: only those of the log on screen, any number behind one message.
    target.messages.clear()
    bridge.handled()
    for index in range(50):
        bridge.on_event(Event("log_line", {"source": "keeper", "line": str(index)}))
        bridge.on_event(Event("log_line", {"source": "some-job", "line": str(index)}))
    assert [type(message) for message in target.messages] == [LogLines]
    lines = bridge.take_lines()
    assert [line["line"] for line in lines] == [str(index) for index in range(50)]


def test_clock_frozen_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("WATCHKEEPER_CONSOLE_NOW", "2030-01-02T03:04:05+00:00")
    clock = Clock.from_env(UTC)
    assert clock.now() == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert clock.short(clock.now() - timedelta(days=1)) == "01-01 03:04"
