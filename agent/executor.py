"""The agent's worker pools: the most recently idle thread takes the next request.

oslo.messaging's threading executor (futurist's ``ThreadPoolExecutor``)
starts a new thread for each request until it has
``executor_thread_pool_size`` of them, and its idle threads wait on one
queue, so the thread that has waited longest takes the next request. A
steady stream of requests is thus spread over every thread in turn, and
each request runs on a thread whose stack and objects have left the CPU
caches: the same database read cost three to four times its
single-thread CPU time there.

:class:`LifoExecutor` keeps its idle threads on a stack instead, so
sequential requests run on the same warm thread, and it starts a thread
only when none is idle. Under a burst it still runs up to
``max_workers`` requests at once, and what arrives beyond that waits in
order of arrival.

The RPC server runs on one, sized by ``executor_thread_pool_size``; each
event listener on one of a few threads (:func:`agent.rpc.listener_executor`).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from concurrent import futures
from typing import Any

_WorkItem = tuple[futures.Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class _Worker:
    """One thread of the pool and the item it was handed."""

    __slots__ = ("wake", "item")

    def __init__(self, item: _WorkItem | None) -> None:
        # A lock held until the pool hands over an item: cheaper to wake
        # than an Event, which goes through a Condition.
        self.wake = threading.Lock()
        self.wake.acquire()
        self.item = item


class LifoExecutor(futures.Executor):
    """A thread pool that wakes its most recently idle thread.

    :param max_workers: the most threads it runs at once; work beyond
        that waits, first in first out.
    :param thread_name_prefix: its threads are named ``<prefix>-<n>``,
        which is how a Guru Meditation report groups them.
    :raises ValueError: when ``max_workers`` is below 1.
    """

    def __init__(self, max_workers: int, thread_name_prefix: str = "rpc-worker") -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self._max_workers = max_workers
        self._thread_name_prefix = thread_name_prefix
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._backlog: collections.deque[_WorkItem] = collections.deque()
        self._threads: list[threading.Thread] = []
        self._shutdown = False

    @property
    def num_workers(self) -> int:
        """How many threads the pool has started."""
        return len(self._threads)

    @property
    def idle_workers(self) -> int:
        """How many of its threads wait for work."""
        return len(self._idle)

    def at_rest(self) -> bool:
        """True when none of its threads is busy and no work waits for one."""
        with self._lock:
            return len(self._idle) == len(self._threads) and not self._backlog

    def submit(self, fn: Callable[..., Any], /, *args: Any,
               **kwargs: Any) -> futures.Future[Any]:
        """Run ``fn(*args, **kwargs)`` on a pool thread.

        :returns: the future of its result.
        :raises RuntimeError: after :meth:`shutdown`.
        """
        future: futures.Future[Any] = futures.Future()
        item: _WorkItem = (future, fn, args, kwargs)
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new work after shutdown")
            if self._idle:
                worker = self._idle.pop()
                worker.item = item
                worker.wake.release()
            elif len(self._threads) < self._max_workers:
                thread = threading.Thread(target=self._serve, args=(_Worker(item),),
                                          name=f"{self._thread_name_prefix}-{len(self._threads)}",
                                          daemon=True)
                self._threads.append(thread)
                thread.start()
            else:
                self._backlog.append(item)
        return future

    def _serve(self, worker: _Worker) -> None:
        item = worker.item
        while item is not None:
            future, fn, args, kwargs = item
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as error:  # noqa: BLE001 - the future carries it
                    future.set_exception(error)
                    del error
                else:
                    future.set_result(result)
                    del result
            del item, future, fn, args, kwargs
            with self._lock:
                if self._backlog:
                    item = self._backlog.popleft()
                    continue
                if self._shutdown:
                    return
                worker.item = None
                self._idle.append(worker)
            worker.wake.acquire()
            item = worker.item

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more work; let the threads finish what they were given.

        :param wait: return only once every thread has ended.
        :param cancel_futures: cancel the work still waiting for a thread.
        """
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                while self._backlog:
                    self._backlog.popleft()[0].cancel()
            for worker in self._idle:
                worker.item = None
                worker.wake.release()
            self._idle.clear()
            threads = list(self._threads)
        if wait:
            for thread in threads:
                thread.join()
