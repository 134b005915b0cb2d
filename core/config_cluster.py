"""The `[cluster]` table and a job's `runs_on`: what turns cluster mode on and where a
job's runs may go. Parsed here so config.py stays the checker of the one-host keys."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from watchkeeper.core.config_table import convert_table
from watchkeeper.core.config_values import (
    LABEL,
    Convert,
    Problems,
    duration_between,
    runs_on,
    show,
)
from watchkeeper.core.config_values import ON_KEEPER as ON_KEEPER  # core/cluster/ reads it here

# A lease shorter than a few seconds is renewed so often that one slow query loses it;
# longer than ten minutes is an outage nobody would wait out.
MIN_LEASE = 2.0
MAX_LEASE = 600.0
DEFAULT_LEASE = 10.0
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class ClusterConfig:
    # The libpq URL with ${VAR}s expanded: it may carry a password, so it is shown only
    # through core.cluster.dsn.masked().
    database: str
    name: str
    lease: float = DEFAULT_LEASE


def _expand(text: str) -> str:
    """${VAR} from the environment, so the password stays out of the file."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        found = os.environ.get(name)
        if found is None:
            raise ValueError(f"${{{name}}} is not set in the environment")
        return found

    return _VARIABLE.sub(value, text)


def _database(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a libpq URL (postgresql://...), got {show(value)}")
    url = _expand(value).strip()
    if not url.startswith(("postgresql://", "postgres://")) and "=" not in url:
        raise ValueError("expected a libpq URL (postgresql://user@host/db) or key=value string")
    return url


def _cluster_name(value: object) -> str:
    if not isinstance(value, str) or not LABEL.fullmatch(value):
        raise ValueError(
            f"bad cluster name {show(value)}: use letters, digits, '_', '.' and '-' "
            "(at most 63), starting with a letter or digit"
        )
    return value


def labels(text: str) -> tuple[str, ...]:
    """A worker's --labels a,b: the same rules as runs_on's list."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    return runs_on(parts) if parts else ()


CLUSTER_FIELDS: dict[str, Convert] = {
    "database": _database,
    "name": _cluster_name,
    "lease": duration_between(MIN_LEASE, MAX_LEASE),
}


def parse_cluster(table: dict[str, object], default_name: str) -> ClusterConfig:
    """The [cluster] table; Problems lists every bad key, keyed by its path."""
    fields, problems = convert_table(table, CLUSTER_FIELDS)
    if "database" not in table:
        problems.append((("database",), "missing required key 'database'"))
    if problems:
        raise Problems(problems)
    name = fields.get("name")
    if name is None:
        name = _cluster_name(default_name) if LABEL.fullmatch(default_name) else "vault"
    lease = fields.get("lease", DEFAULT_LEASE)
    assert isinstance(lease, float | int)
    return ClusterConfig(database=str(fields["database"]), name=str(name), lease=float(lease))
