"""The concurrency figure of SPEC 1.2 §5: eight callers at once against one agent.

First each method of a realistic mix (reads and writes, as nova and
cinder send them) is timed with one caller, for its p50 alone. Then
``callers`` threads call the agent for ``seconds``, each walking the mix
from its own starting point and pausing between calls as a service does
between the requests it serves (a random pause, ``pause`` seconds on
average). The figure is the worst method's p99 at that concurrency over
its p50 with one caller (goal: at most 10), and no call may fail: a
failure makes the figure missed whatever the latencies.

Why the pause: on a 2-core machine, 8 threads calling back to back keep
both cores busy with their own, the broker's and the agent's work, and
by Little's law each call then waits for the 7 others ahead of it
whatever the agent does; the ratio would measure the machine's CPU, not
how the agent serves requests that overlap. ``pause = 0`` still runs
them back to back.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks.stats import Samples

#: One caller's calls per method, after the warm-up, for the p50 alone.
SOLO_CALLS = 200
SOLO_WARMUP = 20


@dataclass
class Outcome:
    """What the callers saw: latencies per method and the failures."""

    samples: dict[str, Samples] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)
    calls: int = 0

    def add(self, method: str, seconds: float) -> None:
        self.samples.setdefault(method, Samples()).values.append(seconds)
        self.calls += 1


class Mix:
    """The calls the callers make, each a fresh request of its kind.

    Writes make new rows (a volume attached and later detached, an
    instance's boot roles recorded) or change one (a secret's value);
    reads are those the figures above time alone.
    """

    def __init__(self, bench: Any) -> None:
        self.bench = bench
        self.secret = bench.call(bench.operator, "secret_generate", usage_type="ceph",
                                 usage_id=f"bench-callers-{uuid.uuid4().hex[:8]}")
        self.instance = bench.instance()
        bench.call(bench.service, "vendordata_get", instance=self.instance)
        self._lock = threading.Lock()
        self._attached: list[dict[str, Any]] = []

    def connector(self) -> dict[str, str]:
        return {"initiator": "iqn.1993-08.org.debian:01:callers", "host": "bench-callers"}

    def attach(self) -> object:
        volume = {"id": str(uuid.uuid4())}
        info = self.bench.call(self.bench.service, "initialize_connection", volume=volume,
                               connector=self.connector(), backend=self.bench.backend)
        with self._lock:
            self._attached.append(volume)
        return info

    def detach(self) -> object:
        with self._lock:
            volume = self._attached.pop() if self._attached else None
        if volume is None:
            return self.attach()
        return self.bench.call(self.bench.service, "terminate_connection", volume=volume,
                               connector=self.connector(), backend=self.bench.backend)

    def operations(self) -> list[tuple[str, Callable[[], object]]]:
        """``(method, call)`` pairs, in the order a caller walks them."""
        bench = self.bench
        value = "c2VjcmV0LXZhbHVl"  # base64 of a short, made-up value
        return [
            ("initialize_connection", self.attach),
            ("secret_get_value",
             lambda: bench.call(bench.operator, "secret_get_value", uuid=self.secret)),
            ("instance_boot_roles_set", lambda: bench.api._cast(
                bench.service, "instance_boot_roles_set", wait=True,
                instance_uuid=str(uuid.uuid4()), roles=["member", "reader"])),
            ("vendordata_get",
             lambda: bench.call(bench.service, "vendordata_get", instance=self.instance)),
            ("secret_set_value", lambda: bench.call(bench.operator, "secret_set_value",
                                                    uuid=self.secret, value=value)),
            ("terminate_connection", self.detach),
        ]


def _solo(operations: list[tuple[str, Callable[[], object]]]) -> dict[str, Samples]:
    """Each method's latencies with one caller, the methods interleaved."""
    for _ in range(SOLO_WARMUP):
        for _, operation in operations:
            operation()
    samples = {name: Samples() for name, _ in operations}
    for _ in range(SOLO_CALLS):
        for name, operation in operations:
            samples[name].time(operation)
    return samples


def _together(operations: list[tuple[str, Callable[[], object]]], callers: int,
              seconds: float, pause: float) -> Outcome:
    """``callers`` threads calling for ``seconds``, ``pause`` s apart on average."""
    outcome = Outcome()
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def caller(first: int) -> None:
        index = first
        pick = random.Random(first)
        while time.monotonic() < stop_at:
            if pause > 0:
                time.sleep(pick.uniform(0, 2 * pause))
            name, operation = operations[index % len(operations)]
            index += 1
            started = time.perf_counter()
            try:
                operation()
            except Exception as error:  # noqa: BLE001 - every failure is counted, by type
                with lock:
                    outcome.failures[f"{name}: {type(error).__name__}"] += 1
                continue
            elapsed = time.perf_counter() - started
            with lock:
                outcome.add(name, elapsed)

    threads = [threading.Thread(target=caller, args=(i,), daemon=True) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 120)
    return outcome


def measure(bench: Any, result: Any) -> None:
    """Fill ``result`` with the worst p99-at-``callers`` / p50-alone ratio."""
    operations = Mix(bench).operations()
    solo = _solo(operations)
    outcome = _together(operations, bench.callers, bench.callers_seconds, bench.callers_pause)
    worst = 0.0
    details = []
    for name, _ in operations:
        alone = solo[name]
        together = outcome.samples.get(name)
        if together is None or not together.values:
            result.failures += 1
            details.append((name, "no call completed at concurrency"))
            continue
        ratio = together.p99 / alone.p50
        worst = max(worst, ratio)
        details.append((name, f"alone p50 {alone.p50 * 1000:.2f} ms, p99 "
                              f"{alone.p99 * 1000:.2f} ms; {bench.callers} callers "
                              f"p50 {together.p50 * 1000:.2f} ms, p99 {together.p99 * 1000:.2f} "
                              f"ms (n={len(together.values)}); p99 / alone p50 {ratio:.2f}"))
    result.value = worst
    result.failures += sum(outcome.failures.values())
    failed = ", ".join(f"{key} x{count}" for key, count in sorted(outcome.failures.items()))
    details.insert(0, ("calls", f"{outcome.calls:,} completed in {bench.callers_seconds:g} s "
                                f"({outcome.calls / bench.callers_seconds:.0f}/s; "
                                f"{bench.callers_pause * 1000:g} ms mean pause between a "
                                f"caller's calls), failed: {failed or 'none'}"))
    result.details = details
