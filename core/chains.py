"""`after` chains: a dependent runs once every job it names has succeeded in one wave
(one slot, one --once, one manual start and what follows from it). Pure bookkeeping."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Protocol

from watchkeeper.core import tuning
from watchkeeper.core.config import Config


def dependents_of(config: Config) -> dict[str, list[str]]:
    """job -> the jobs whose `after` names it."""
    dependents: dict[str, list[str]] = {}
    for name, job in config.jobs.items():
        for needed in job.after:
            dependents.setdefault(needed, []).append(name)
    return dependents


def wave_complete(
    waves: OrderedDict[str, set[str]], after: tuple[str, ...], succeeded: str, wave: str
) -> bool:
    """Note that `succeeded` succeeded in `wave` for a dependent that waits for `after`;
    True once the wave has them all (and then it is forgotten)."""
    met = waves.setdefault(wave, set())
    met.add(succeeded)
    waves.move_to_end(wave)
    while len(waves) > tuning.WAVES_KEPT:
        waves.popitem(last=False)
    if not met.issuperset(after):
        return False
    del waves[wave]
    return True


class Waiting(Protocol):
    """A dependent as the keeper holds it: its waves so far."""

    @property
    def waves(self) -> OrderedDict[str, set[str]]: ...


class Chains:
    def __init__(self, config: Config) -> None:
        self.configure(config)

    def configure(self, config: Config) -> None:
        self.dependents = dependents_of(config)
        self.after = {name: tuple(job.after) for name, job in config.jobs.items()}

    def advance(self, succeeded: str, wave: str, jobs: Mapping[str, Waiting]) -> Iterator[str]:
        """The dependents of `succeeded` whose wave is now complete."""
        for name in self.dependents.get(succeeded, ()):
            dependent = jobs.get(name)
            if dependent is not None and wave_complete(
                dependent.waves, self.after[name], succeeded, wave
            ):
                yield name
