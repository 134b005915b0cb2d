"""Run parameters at run time: the NAME=VALUE words an operator gives (`run JOB -p k=v`,
the console's form, the control socket's `run` op), checked against the job's declared
params; the values a run gets (defaults filled in), its WATCHKEEPER_PARAM_<NAME>
variables, the secrets among them, and the copy its history line records."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from watchkeeper.core.config import JobConfig
from watchkeeper.core.environment import MASK, MIN_SECRET_LENGTH, is_secret_name
from watchkeeper.core.param_rules import MAX_PARAMS, env_name, value_problem
from watchkeeper.core.suggest import did_you_mean


class ParamError(ValueError):
    """Parameters a run cannot take; the message is for the operator."""


def parse_words(words: Iterable[str]) -> dict[str, str]:
    """{"day": "2026-12-01"} from ["day=2026-12-01"]; a later word for a name wins, as a
    later `-p` would be expected to."""
    given: dict[str, str] = {}
    for word in words:
        name, equals, value = word.partition("=")
        if not equals or not name:
            raise ParamError(f"-p {word!r}: expected NAME=VALUE, e.g. -p day=2026-12-01")
        given[name] = value
    return given


def check_given(job: JobConfig, given: Mapping[str, object]) -> dict[str, str]:
    """`given` as the job takes it; ParamError names the first thing it does not take."""
    if not given:
        return {}
    if not job.params:
        names = ", ".join(sorted(given))
        raise ParamError(
            f"job {job.name!r} takes no parameters (its config declares no params); got {names}"
        )
    if len(given) > MAX_PARAMS:
        raise ParamError(f"{len(given)} parameters; at most {MAX_PARAMS}")
    checked: dict[str, str] = {}
    for name, value in given.items():
        if name not in job.params:
            raise ParamError(
                f"job {job.name!r} has no parameter {name!r}{did_you_mean(name, job.params)}; "
                f"its parameters: {', '.join(job.params)}"
            )
        problem = value_problem(value)
        if problem:
            raise ParamError(f"parameter {name!r}: {problem}")
        assert isinstance(value, str)
        checked[name] = value
    return checked


def run_values(job: JobConfig, given: Mapping[str, str] | None) -> dict[str, str]:
    """Every declared param with its value for one run: the default unless given. A run
    queued before a reload dropped a name does not bring that name back."""
    if not job.params:
        return {}
    given = given or {}
    return {name: given.get(name, default) for name, default in job.params.items()}


def param_env(values: Mapping[str, str]) -> dict[str, str]:
    return {env_name(name): value for name, value in values.items()}


def secrets(values: Mapping[str, str]) -> list[str]:
    """Values to mask in the run's output, as env secrets are: those of names that look
    secret (TOKEN, SECRET, PASSWORD, KEY), long enough to mask."""
    return [
        value
        for name, value in values.items()
        if is_secret_name(name) and len(value) >= MIN_SECRET_LENGTH
    ]


def recorded(values: Mapping[str, str]) -> dict[str, str] | None:
    """What the history line keeps: every value but a secret-looking one's; None (no
    `params` field) for a job that declares none."""
    if not values:
        return None
    return {name: MASK if is_secret_name(name) else value for name, value in values.items()}
