"""The one percentile the project uses: nearest rank, as `watchkeeper stats`, metrics.prom
and the benchmarks report it (p99 of 100 samples is the 99th smallest, never an
interpolation between two)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def nearest_rank(ordered: Sequence[T], percent: float) -> T:
    """The `percent` percentile (0-100] of `ordered` (sorted, not empty)."""
    # percent * n / 100, not (percent / 100) * n: a whole percent times a count is exact.
    return ordered[max(math.ceil(percent * len(ordered) / 100), 1) - 1]
