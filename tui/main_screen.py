"""The main screen: the header, the five panes and the footer, and the keys that act on
what is selected. It works out the target (the selected job, run or file) and hands the
act to the app's Operations; what it does itself only changes the view.

Layout, decided at 80x24 and grown from there: Jobs across the top (as tall as its rows,
at most 9 rows at 24 lines), then Vault | History, then Log | Quota. Pane sizes never
follow the focus; `z` gives the focused pane the whole screen. Reading order, tab order
and the pane numbers agree: 1 Jobs, 2 Vault, 3 History, 4 Log, 5 Quota.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen

from watchkeeper.tui.model import Model
from watchkeeper.tui.operations import Operations
from watchkeeper.tui.text import Clock
from watchkeeper.tui.widgets.footer import QuietFooter
from watchkeeper.tui.widgets.header import HeaderBar
from watchkeeper.tui.widgets.history_pane import HistoryPane
from watchkeeper.tui.widgets.jobs_pane import JobsPane
from watchkeeper.tui.widgets.log_pane import LogPane
from watchkeeper.tui.widgets.pane import Pane
from watchkeeper.tui.widgets.quota_pane import QuotaPane
from watchkeeper.tui.widgets.vault_pane import VaultPane

PANE_ORDER = ("jobs-pane", "vault-pane", "history-pane", "log-pane", "quota-pane")
FAILED = ("failure", "timeout", "interrupted")


class MainScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "run_job", "Run", tooltip="Run the selected job now"),
        Binding("p", "pause_job", "Pause", tooltip="Pause or resume the selected job"),
        Binding("P", "pause_all", "Pause all", tooltip="Pause or resume everything"),
        Binding("x", "cancel_run", "Cancel", tooltip="Cancel the selected run (asks first)"),
        Binding(
            "slash",
            "filter",
            "Filter",
            key_display="/",
            tooltip="Filter jobs or history; search the log",
        ),
        Binding("f", "follow", "Follow", tooltip="Follow the end of the log, or stop"),
        Binding(
            "R",
            "run_with_params",
            "Params",
            show=False,  # at 80 columns the footer has no room left: palette and help
            tooltip="Run the selected job with parameters (a form); on a failed run in "
            "History, run its job again",
        ),
        Binding("e", "edit", "Edit", show=False, tooltip="Edit the config or a vault file"),
        Binding("w", "wrap", "Wrap", show=False, tooltip="Wrap long log lines, or not"),
        Binding("z", "zoom", "Zoom", show=False, tooltip="Give the focused pane the whole screen"),
        Binding(
            "enter",
            "details",
            "Details",
            show=False,
            tooltip="Details: a job, a run's output, a vault file; on the Log: keeper/job log",
        ),
        Binding("tab", "step_pane(1)", "Next pane", show=False, tooltip="Next pane"),
        Binding("shift+tab", "step_pane(-1)", "Previous pane", show=False, tooltip="Previous pane"),
        Binding("1", "focus_pane(1)", "Jobs", show=False, tooltip="Jobs pane"),
        Binding("2", "focus_pane(2)", "Vault", show=False, tooltip="Vault pane"),
        Binding("3", "focus_pane(3)", "History", show=False, tooltip="History pane"),
        Binding("4", "focus_pane(4)", "Log", show=False, tooltip="Log pane"),
        Binding("5", "focus_pane(5)", "Quota", show=False, tooltip="Quota pane"),
        Binding("W", "workers", "Workers", tooltip="The cluster's workers and queues"),
    ]
    ALLOW_IN_MAXIMIZED_VIEW = "#header, Footer"

    def __init__(self, clock: Clock, model: Model, ops: Operations) -> None:
        super().__init__()
        self.model = model
        self.ops = ops
        self.HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
        self.VERTICAL_BREAKPOINTS = [(0, "-short"), (34, "-tall")]
        # Kept, not queried: the app reaches them ten times a second, and a query fails
        # while the screen is being torn down.
        self.header = HeaderBar(id="header")
        self.jobs_pane = JobsPane()
        self.vault_pane = VaultPane()
        self.history_pane = HistoryPane()
        self.log_pane = LogPane(clock)
        self.quota_pane = QuotaPane()

    def compose(self) -> ComposeResult:
        yield self.header
        with Vertical(id="body"):
            yield self.jobs_pane
            with Horizontal(id="middle", classes="band"):
                yield self.vault_pane
                yield self.history_pane
            with Horizontal(id="bottom", classes="band"):
                yield self.log_pane
                yield self.quota_pane
        yield QuietFooter(compact=True)

    def on_mount(self) -> None:
        self.jobs_pane.main().focus()

    def panes(self) -> list[Pane]:
        return [self.jobs_pane, self.vault_pane, self.history_pane, self.log_pane, self.quota_pane]

    def focused_pane(self) -> Pane | None:
        node: Any = self.focused
        while node is not None and not isinstance(node, Pane):
            node = node.parent
        return node

    # ---- what is selected ------------------------------------------------------------

    def selected_job(self) -> str | None:
        """The job `r` and `p` act on: the selected run's in History, else Jobs'."""
        if isinstance(self.focused_pane(), HistoryPane):
            record = self.history_pane.selected()
            if record is not None:
                return record.get("taskId")
        return self.jobs_pane.selected

    def selected_run(self) -> tuple[str, str] | None:
        """(run id, job) of the run `x` would cancel."""
        if isinstance(self.focused_pane(), HistoryPane):
            record = self.history_pane.selected()
            if record is not None and record.get("status") == "running":
                return record["id"], record["taskId"]
        name = self.selected_job()
        job = self.model.jobs.get(name) if name else None
        if job is None or not job.running:
            return None
        run_id = min(job.running, key=lambda key: job.running[key])
        return run_id, job.name

    # ---- keys that act on the keeper -------------------------------------------------

    def action_run_job(self) -> None:
        self.ops.run_job(self.selected_job())

    def action_pause_job(self) -> None:
        self.ops.toggle_pause(self.selected_job())

    def action_pause_all(self) -> None:
        self.ops.toggle_pause_all()

    def action_cancel_run(self) -> None:
        self.ops.cancel_run(self.selected_run())

    def action_run_with_params(self) -> None:
        # DESIGN's R is the form; on a run in History it is a retry (prefilled with that
        # run's values when the job has params), as it was before params.
        if isinstance(self.focused_pane(), HistoryPane):
            self.ops.retry(self.history_pane.selected())
        else:
            self.ops.run_with_params(self.jobs_pane.selected)

    def action_edit(self) -> None:
        pane = self.focused_pane()
        self.ops.edit(self.vault_pane.selected_file() if isinstance(pane, VaultPane) else None)

    # ---- keys that change the view ---------------------------------------------------

    def action_details(self) -> None:
        # Asked of the app as the panes ask it (their messages bubble up to it).
        pane = self.focused_pane()
        if isinstance(pane, JobsPane) and pane.selected:
            pane.post_message(JobsPane.Details(pane.selected))
        elif isinstance(pane, HistoryPane) and pane.selected():
            pane.post_message(HistoryPane.Details(dict(pane.selected() or {})))
        elif isinstance(pane, VaultPane):
            relative = pane.selected_file()
            if relative:
                pane.post_message(VaultPane.Details(relative))
        elif isinstance(pane, LogPane):
            self.action_log_source()

    def action_log_source(self) -> None:
        """Switch the Log pane between the keeper's log and the selected job's."""
        log = self.log_pane
        job = self.jobs_pane.selected
        if log.job_mode or job is None:
            log.job_mode = False
            log.set_source("keeper")
        else:
            log.job_mode = True
            log.set_source(job)

    def action_filter(self) -> None:
        pane = self.focused_pane()
        if isinstance(pane, LogPane):
            pane.open_search()
            return
        target = pane if isinstance(pane, HistoryPane) else self.jobs_pane
        target.filter_input.open()

    def action_follow(self) -> None:
        following = self.log_pane.toggle_follow()
        self.notify(f"follow log {'on' if following else 'off'}", timeout=2)

    def action_wrap(self) -> None:
        wrapping = self.log_pane.toggle_wrap()
        self.notify(f"wrap log lines {'on' if wrapping else 'off'}", timeout=2)

    def action_zoom(self) -> None:
        if self.maximized is not None:
            self.minimize()
            return
        pane = self.focused_pane()
        if pane is not None:
            self.maximize(pane, container=False)

    def action_focus_pane(self, number: int) -> None:
        if self.maximized is not None:
            self.minimize()
        self.query_one(f"#{PANE_ORDER[number - 1]}", Pane).main().focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "run_with_params":
            # It runs a job as `r` does, so wherever `r` is refused (read-only), so is this.
            return self.check_action("run_job", parameters)
        # Without [cluster] there are no workers: the key is neither shown nor offered.
        return action != "workers" or self.ops.app.config.cluster is not None

    def action_workers(self) -> None:
        from watchkeeper.tui.screens.workers import WorkersScreen

        cluster = self.ops.app.config.cluster
        if cluster is not None:
            self.app.push_screen(WorkersScreen(cluster))

    def action_step_pane(self, step: int) -> None:
        pane = self.focused_pane()
        index = PANE_ORDER.index(pane.id) if pane is not None and pane.id in PANE_ORDER else -step
        self.action_focus_pane((index + step) % len(PANE_ORDER) + 1)
