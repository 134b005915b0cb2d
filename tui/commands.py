"""The command palette (ctrl+p) on the main screen: every key of it by name, and each
job's own actions ("Run heartbeat", "Pause nightly-report"). Titles are short; what a
command does, and its key, is its help line. (The app adds its theme picker, help and
quit.)"""

from __future__ import annotations

from collections.abc import Iterator

from textual.app import SystemCommand
from textual.binding import Binding

from watchkeeper.tui.main_screen import MainScreen
from watchkeeper.tui.widgets.jobs_pane import JobsPane

NOT_IN_PALETTE = ("tab", "shift+tab", "1", "2", "3", "4", "5", "enter")


def screen_commands(screen: MainScreen) -> Iterator[SystemCommand]:
    for binding in MainScreen.BINDINGS:
        if not isinstance(binding, Binding) or binding.key in NOT_IN_PALETTE:
            continue
        if not screen.check_action(binding.action, ()):
            continue  # not in this mode (Workers without [cluster])
        key = binding.key_display or binding.key
        yield SystemCommand(
            binding.description,
            f"{binding.tooltip} ({key})",
            lambda action=binding.action: screen.run_action(action),
        )
    yield SystemCommand(
        "Log source",
        "Switch the Log between the keeper's log and the selected job's (enter on the Log)",
        screen.action_log_source,
    )
    yield from job_commands(screen)
    yield from params_commands(screen)


def job_commands(screen: MainScreen) -> Iterator[SystemCommand]:
    ops, model, jobs_pane = screen.ops, screen.model, screen.jobs_pane
    # A read-only console (tui/attached.py) refuses these keys: their commands go too.
    may_run, may_pause = screen.check_action("run_job", ()), screen.check_action("pause_job", ())
    for name, job in model.jobs.items():
        if may_run:
            yield SystemCommand(
                f"Run {name}",
                f"Run {name} now ({job.trigger})",
                lambda name=name: ops.run_job(name),
            )
        if may_pause and model.is_own_paused(name):
            yield SystemCommand(
                f"Resume {name}",
                f"Resume {name}; shows what would fire first",
                lambda name=name: ops.toggle_pause(name),
            )
        elif may_pause:
            yield SystemCommand(
                f"Pause {name}",
                f"Pause {name}: no more runs start until it is resumed",
                lambda name=name: ops.toggle_pause(name),
            )
        yield SystemCommand(
            f"Show {name}",
            f"{name}'s config and next fire times",
            lambda name=name: jobs_pane.post_message(JobsPane.Details(name)),
        )


def params_commands(screen: MainScreen) -> Iterator[SystemCommand]:
    """"Run NAME with…" for each job that declares params (R on the job)."""
    if not screen.check_action("run_with_params", ()):
        return
    for name, job in screen.ops.app.config.jobs.items():
        if job.params and name in screen.model.jobs:
            yield SystemCommand(
                f"Run {name} with…",
                f"Run {name} with parameters: a form of {', '.join(job.params)} (R)",
                lambda name=name: screen.ops.run_with_params(name),
            )
