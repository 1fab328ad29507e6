"""Worker threads per vendordata target, so targets cannot starve each other.

A single pool shared by every target lets one slow target take all its
threads: each lookup adds another exchange stuck on it, and soon the
good targets wait in the queue behind them.  A :class:`Lane` is a small
pool of its own for one target; a slow target fills only its own lane,
and a job that waits there is dropped when its lookup has given up on it
(its future cancelled) rather than run late.

Lane threads are daemons: an agent stopping with exchanges in flight
never waits for a target on its way out, and each exchange is bounded by
its own deadline anyway (:mod:`agent.vendordata.exchange`).
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from agent import metrics

__all__ = ["Lane"]

T = TypeVar("T")

_STOP = object()


class Lane:
    """A bounded set of daemon threads running one target's exchanges.

    :param name: the target's name, for thread names.
    :param max_workers: exchanges with this target at once; more wait.
    :raises ValueError: when ``max_workers`` is below 1.
    """

    def __init__(self, name: str, max_workers: int) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.name = name
        self._busy = metrics.VENDORDATA_LANE_BUSY.labels(name)
        self._max_workers = max_workers
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        # Threads waiting for a job, and jobs waiting for a thread.
        self._idle = 0
        self._waiting = 0
        self._closed = False

    def submit(self, func: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        """Run ``func(*args)`` on one of the lane's threads.

        :returns: its future; cancelling it before it starts drops the job.
        :raises RuntimeError: when the lane is closed.
        """
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the vendordata lane is closed")
            self._jobs.put((future, func, args))
            self._waiting += 1
            if self._waiting > self._idle and self._threads < self._max_workers:
                self._threads += 1
                threading.Thread(target=self._work, daemon=True,
                                 name=f"custos-vendordata-{self.name}").start()
        return future

    def close(self) -> None:
        """Stop the threads once their job ends; drop jobs not started."""
        with self._lock:
            self._closed = True
            threads = self._threads
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not _STOP and job[0].cancel():
                # cancel() alone does not wake concurrent.futures.wait().
                job[0].set_running_or_notify_cancel()
        for _ in range(threads):
            self._jobs.put(_STOP)

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            job = self._jobs.get()
            with self._lock:
                self._idle -= 1
                if job is not _STOP:
                    self._waiting -= 1
            if job is _STOP:
                return
            future, func, args = job
            if future.set_running_or_notify_cancel():
                self._busy.inc()
                try:
                    future.set_result(func(*args))
                except BaseException as error:  # noqa: BLE001 - handed to the waiter
                    future.set_exception(error)
                finally:
                    self._busy.dec()
