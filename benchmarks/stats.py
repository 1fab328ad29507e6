"""Percentiles and timing samples for the benchmark figures."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field


def percentile(values: list[float], q: float) -> float:
    """Return the nearest-rank ``q`` percentile (0 < q <= 100) of ``values``.

    :raises ValueError: when ``values`` is empty.
    """
    if not values:
        raise ValueError("no samples")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Samples:
    """Durations in seconds of one operation, with their percentiles."""

    values: list[float] = field(default_factory=list)
    #: CPU seconds the serving process used while these were timed.
    cpu_s: float = 0.0

    def time(self, operation: Callable[[], object]) -> None:
        """Run ``operation`` once and keep how long it took."""
        started = time.perf_counter()
        operation()
        self.values.append(time.perf_counter() - started)

    @property
    def p50(self) -> float:
        return percentile(self.values, 50)

    @property
    def p99(self) -> float:
        return percentile(self.values, 99)

    def cpu_ms_per_call(self) -> float:
        """Server CPU time per timed operation, in milliseconds."""
        return self.cpu_s * 1000 / max(1, len(self.values))

    def describe_ms(self) -> str:
        """``p50 x ms, p99 y ms (n samples)``."""
        return f"p50 {self.p50 * 1000:.3f} ms, p99 {self.p99 * 1000:.3f} ms (n={len(self.values)})"
