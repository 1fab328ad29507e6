"""Group commit: the work of concurrent requests committed in one transaction.

A cast that only writes a row or two spends most of its time opening,
committing and closing its transaction, and under a burst of such casts
every worker thread does so at once, contending for the database's
write lock. :class:`GroupCommit` lets the requests of one method that
arrive together share a transaction:

* a request that finds no batch being committed leads: it takes every
  request waiting (at most ``max_batch``, itself first) and runs their
  work, one after the other, in one transaction (:func:`db.api.run_in_transaction`,
  with its retries);
* requests that arrive meanwhile wait; once the leader has committed, it
  wakes them with their results and hands the lead to the first of those
  still waiting, so no thread serves others for longer than one batch;
* when any work of a batch raises, or the batch cannot commit, the whole
  transaction is rolled back and each request of the batch runs again in
  a transaction of its own, exactly as it would without grouping: one
  request's bad input never costs another its write, and each gets its
  own error.

A request thus returns only after its work is committed, as with a
transaction of its own; the work must be safe to run more than once
(as any work given to ``run_in_transaction`` is). A waiting request's work
runs on the leader's thread, so what it logs there carries the leader's
request id.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session

from db import api as db_api

LOG = logging.getLogger(__name__)

T = TypeVar("T")

_PENDING = object()


class _Entry(Generic[T]):
    __slots__ = ("work", "wake", "lead", "done", "result", "error")

    def __init__(self, work: Callable[[Session], T]) -> None:
        self.work = work
        # Held until the entry is done or made the leader.
        self.wake = threading.Lock()
        self.wake.acquire()
        self.lead = False
        self.done = False
        self.result: Any = _PENDING
        self.error: BaseException | None = None


class GroupCommit:
    """Commits the work of requests that arrive together in one transaction.

    :param max_batch: the most requests one transaction holds.
    :raises ValueError: when ``max_batch`` is below 1.
    """

    def __init__(self, max_batch: int = 64) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._waiting: deque[_Entry[Any]] = deque()
        self._leading = False
        #: Batches committed together, and how many requests they held
        #: (for tests and reports).
        self.batches = 0
        self.grouped = 0

    def run(self, work: Callable[[Session], T]) -> T:
        """Run ``work(session)`` in a transaction, maybe shared with others.

        :returns: what ``work`` returned, once its transaction committed.
        :raises: what ``work`` or :func:`db.api.run_in_transaction` raised
            when the work ran in a transaction of its own.
        """
        entry: _Entry[T] = _Entry(work)
        with self._lock:
            self._waiting.append(entry)
            entry.lead = not self._leading
            self._leading = True
        while not entry.done:
            if not entry.lead:
                entry.wake.acquire()
                continue
            self._lead_one_batch()
        if entry.error is not None:
            error, entry.error = entry.error, None
            raise error
        return entry.result

    def _lead_one_batch(self) -> None:
        with self._lock:
            count = min(self.max_batch, len(self._waiting))
            batch = [self._waiting.popleft() for _ in range(count)]
        try:
            self._commit(batch)
        except BaseException as error:
            # Interrupted between requests: whatever has no outcome yet
            # must not look committed.
            for entry in batch:
                if entry.error is None and entry.result is _PENDING:
                    entry.error = error
            raise
        finally:
            with self._lock:
                if self._waiting:
                    successor = self._waiting[0]
                    successor.lead = True
                    successor.wake.release()
                else:
                    self._leading = False
            for entry in batch:
                entry.done = True
                if not entry.lead:
                    entry.wake.release()

    def _commit(self, batch: list[_Entry[Any]]) -> None:
        if len(batch) > 1:
            try:
                results = db_api.run_in_transaction(
                    lambda session: [entry.work(session) for entry in batch])
            except Exception as error:  # noqa: BLE001 - each request then runs alone
                LOG.debug("A batch of %d requests failed (%s); running each alone",
                          len(batch), type(error).__name__)
            else:
                for entry, result in zip(batch, results):
                    entry.result = result
                self.batches += 1
                self.grouped += len(batch)
                LOG.debug("Committed %d requests in one transaction", len(batch))
                return
        for entry in batch:
            try:
                entry.result = db_api.run_in_transaction(entry.work)
            except Exception as error:  # noqa: BLE001 - it belongs to that request
                entry.error = error
