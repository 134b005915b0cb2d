"""Pause and resume, of one job or of everything: what is saved in Logs/state.toml, and
what a resume releases of what piled up meanwhile (core/resume.py plans it)."""

from __future__ import annotations

from watchkeeper.core.host import Host
from watchkeeper.core.runtime import StartRequest, UnknownJob
from watchkeeper.core.state import RuntimeState


class Pauses:
    def __init__(self, host: Host) -> None:
        self.host = host

    def on(self, job: str | None) -> bool:
        """Whether the pause that pause(job) sets, and resume(job) lifts, is on."""
        state = self.host.state
        if job is None:
            return state.paused
        if job not in self.host.jobs:
            raise UnknownJob(job)
        return job in state.paused_jobs

    def pause(self, job: str | None) -> bool:
        """False when it was paused already: nothing changes then."""
        if self.on(job):
            return False
        self._set(job, True)
        return True

    def resume(self, job: str | None, missed: bool) -> bool:
        """Lift a pause. What piled up meanwhile is released as the resume plan says;
        `missed=False` leaves out the catch-up runs of slots that passed. False when
        that pause was not on: nothing changes then."""
        if not self.on(job):
            return False
        from watchkeeper.core.resume import waking_jobs  # a local run never resumes: kept out

        host = self.host
        # In the plan's order: queued, then catch-up; waiting files go once the pause is
        # lifted (_set offers them).
        for name in waking_jobs(host.state, list(host.jobs), job):
            runtime = host.jobs[name]
            slots, runtime.missed_while_paused = runtime.missed_while_paused, 0
            if runtime.queued and not runtime.active:
                host.submit(runtime.queued.popleft())
            if not slots or not runtime.config.enabled:
                continue
            if missed and host.config.keeper.catch_up == "once":
                host.log.info(f"{name}: {slots} slot(s) missed while paused; catching up once")
                host.submit(StartRequest(name, "catch_up"))
            else:
                host.log.info(f"{name}: {slots} slot(s) missed while paused left out")
        self._set(job, False)
        host.wake()
        return True

    def _set(self, job: str | None, paused: bool) -> None:
        host = self.host
        state = host.state
        if job is None:
            state.paused = paused
        elif paused:
            state.paused_jobs.add(job)
        else:
            state.paused_jobs.discard(job)
        try:
            # The console saves the theme into the same file: keep what it chose.
            state.theme = host.store.update_state(self._save).theme
        except OSError as error:
            host.log.error(f"cannot save {host.vault / 'Logs' / 'state.toml'}: {error.strerror}")
        host.log.info(f"{job or 'all jobs'} {'paused' if paused else 'resumed'}")
        self.changed([job] if job else list(host.jobs))

    def _save(self, state: RuntimeState) -> None:
        state.paused, state.paused_jobs = self.host.state.paused, set(self.host.state.paused_jobs)

    def changed(self, jobs: list[str]) -> None:
        """Tell subscribers, and offer the files that waited for a job now running."""
        host = self.host
        host.bus.publish("keeper_state", state=host.state_word)
        for name in jobs:
            runtime = host.jobs.get(name)
            if runtime is None:
                continue
            host.publish_job(runtime)
            if not host.state.is_paused(name) and host.handover.has_pending(name):
                host.files_ready(name)
