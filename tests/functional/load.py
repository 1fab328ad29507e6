"""Calls from several threads at once, recording how each one ended."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import oslo_messaging as messaging


class Load:
    """Run ``operation(worker, n)`` in ``threads`` threads until :meth:`stop`.

    Each call's outcome is kept with the times it started and ended:
    ``ok`` (with its result), ``timeout`` (MessagingTimeout at the caller)
    or the exception's class name for anything else.
    """

    def __init__(self, operation: Callable[[int, int], Any], threads: int = 4) -> None:
        self.operation = operation
        self.outcomes: list[tuple[float, str, Any]] = []
        self.spans: list[tuple[float, float]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._work, args=(i,), daemon=True)
                         for i in range(threads)]

    def _work(self, worker: int) -> None:
        n = 0
        while not self._stopping.is_set():
            n += 1
            started = time.monotonic()
            try:
                outcome: tuple[float, str, Any] = (started, "ok", self.operation(worker, n))
            except messaging.MessagingTimeout:
                outcome = (started, "timeout", None)
            except Exception as error:  # noqa: BLE001 - recorded for the assertion
                outcome = (started, type(error).__name__, error)
            with self._lock:
                self.outcomes.append(outcome)
                self.spans.append((started, time.monotonic()))

    def start(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def wait_for(self, kind: str, count: int, timeout: float = 60,
                 after: float = 0.0) -> None:
        """Wait until ``count`` calls started after ``after`` ended as ``kind``."""
        deadline = time.monotonic() + timeout
        while self.count(kind, after) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {self.count(kind, after)} {kind} calls in "
                                     f"{timeout} s: {self.summary()}")
            time.sleep(0.05)

    def count(self, kind: str, after: float = 0.0) -> int:
        with self._lock:
            return sum(1 for started, k, _ in self.outcomes if k == kind and started >= after)

    def stop(self, timeout: float = 60) -> None:
        """Stop starting calls and wait for those in flight to end."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout)
            assert not thread.is_alive(), "a call neither returned nor timed out"

    def overlapping(self, start: float, end: float) -> int:
        """How many calls were in flight at some time between ``start`` and ``end``."""
        with self._lock:
            return sum(1 for began, ended in self.spans if began <= end and ended >= start)

    def summary(self) -> Counter[str]:
        with self._lock:
            return Counter(kind for _, kind, _ in self.outcomes)

    def results(self, after: float = 0.0) -> list[Any]:
        """Results of the successful calls started after ``after``."""
        with self._lock:
            return [r for started, k, r in self.outcomes if k == "ok" and started >= after]
