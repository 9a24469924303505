"""Shared by the micro-benchmarks (imported from the script's own folder)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence


def rate(fn: Callable[[Sequence], object], items: Sequence, repeats: int) -> float:
    """Items per second of fn(items): the median of `repeats` runs."""
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(items)
        runs.append(len(items) / (time.perf_counter() - t0))
    return statistics.median(runs)
