"""The nearest-rank percentile against its definition: the smallest value with at least
`percent` of the values at or below it."""

from __future__ import annotations

import random

from watchkeeper.core.stats import nearest_rank


def test_nearest_rank_is_the_smallest_value_covering_the_percent() -> None:
    rng = random.Random(5)
    for _ in range(500):
        values = sorted(rng.choice([1, 2, 3]) * rng.random() for _ in range(rng.randint(1, 40)))
        for percent in (1, 7, 50, 90, 95, 99, 100):
            got = nearest_rank(values, percent)
            n = len(values)
            covering = [v for v in values if 100 * sum(w <= v for w in values) >= percent * n]
            assert got == min(covering)


def test_the_p99_of_a_hundred_samples_is_the_ninety_ninth() -> None:
    assert nearest_rank(list(range(1, 101)), 99) == 99
    assert nearest_rank([b"3", b"9"], 50) == b"3"
