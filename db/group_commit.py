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
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session

from db import api as db_api
from db import upsert

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
        outcomes, shared = commit_together([entry.work for entry in batch])
        for entry, (result, error) in zip(batch, outcomes):
            entry.result, entry.error = result, error
        if shared:
            self.batches += 1
            self.grouped += len(batch)


def commit_together(works: list[Callable[[Session], Any]]
                    ) -> tuple[list[tuple[Any, BaseException | None]], bool]:
    """Run ``works`` in one transaction; each in one of its own if that fails.

    Together, the rows they insert with :func:`db.upsert.insert_if_absent`
    are written at the end, in one statement per table, so a work must not
    read back what it inserted that way.

    :returns: ``(result, error)`` for each work, in order, and whether they
        were committed together.
    """
    if len(works) > 1:

        def together(session: Session) -> list[Any]:
            # Their one-row inserts go to the database as one statement.
            session.info[upsert.HELD] = {}
            results = [work(session) for work in works]
            upsert.write_held(session)
            return results

        try:
            results = db_api.run_in_transaction(together)
        except Exception as error:  # noqa: BLE001 - each request then runs alone
            LOG.debug("A batch of %d requests failed (%s); running each alone",
                      len(works), type(error).__name__)
        else:
            LOG.debug("Committed %d requests in one transaction", len(works))
            return [(result, None) for result in results], True
    outcomes: list[tuple[Any, BaseException | None]] = []
    for work in works:
        try:
            outcomes.append((db_api.run_in_transaction(work), None))
        except Exception as error:  # noqa: BLE001 - it belongs to that request
            outcomes.append((None, error))
    return outcomes, False


class DeferredCommits:
    """Commits work nobody waits for, in batches, on a thread of its own.

    A cast's caller never learns its outcome, so the worker that checked
    the cast need not wait for its commit either: :meth:`submit` queues the
    work and the worker takes the next message. One committer thread takes
    what has queued, waiting up to ``linger`` seconds for more while fewer
    than ``max_batch`` wait (casts come in bursts: a boot storm, a
    scheduler's fan-out), runs the batch as :func:`commit_together` does,
    and then calls each work's ``done`` with its outcome. Nothing is
    committed, or announced, before its batch's commit.

    Bounds: at most ``max_pending`` works wait; beyond that :meth:`submit`
    refuses and the worker runs its work itself, which slows it and, with
    it, the broker's deliveries. One thread, started on first use; it
    ends after ``idle_exit`` seconds without work and starts again when
    work comes.

    :param name: names the committer thread (``commit-<name>``).
    :raises ValueError: when ``max_batch`` or ``max_pending`` is below 1.
    """

    def __init__(self, name: str, max_batch: int = 64, linger: float = 0.005,
                 max_pending: int = 1024, idle_exit: float = 60.0) -> None:
        if max_batch < 1 or max_pending < 1:
            raise ValueError("max_batch and max_pending must be at least 1")
        self.name = name
        self.max_batch = max_batch
        self.linger = linger
        self.max_pending = max_pending
        self.idle_exit = idle_exit
        self._cond = threading.Condition()
        self._queue: deque[tuple[Callable[[Session], Any],
                                 Callable[[Any, BaseException | None], None]]] = deque()
        self._busy = 0
        self._thread: threading.Thread | None = None
        #: Batches committed and works they held (for tests and reports).
        self.batches = 0
        self.committed = 0

    def submit(self, work: Callable[[Session], Any],
               done: Callable[[Any, BaseException | None], None]) -> bool:
        """Queue ``work``; ``done(result, error)`` is called once it has an outcome.

        :returns: False, queuing nothing, when ``max_pending`` works wait.
        """
        with self._cond:
            if len(self._queue) >= self.max_pending:
                return False
            self._queue.append((work, done))
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name=f"commit-{self.name}",
                                                daemon=True)
                self._thread.start()
            elif len(self._queue) == 1:
                self._cond.notify_all()
        return True

    def pending(self) -> int:
        """How many works wait or are being committed."""
        with self._cond:
            return len(self._queue) + self._busy

    def drain(self, timeout: float) -> bool:
        """Wait until every work queued so far has its outcome.

        :returns: False when some still had none after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def _serve(self) -> None:
        while True:
            with self._cond:
                if not self._queue and not self._cond.wait_for(lambda: bool(self._queue),
                                                               self.idle_exit):
                    self._thread = None
                    return
                if len(self._queue) < self.max_batch and self.linger > 0:
                    # Not notified while the queue is not empty: this wait
                    # lets the batch grow for the whole linger.
                    self._cond.wait(self.linger)
                count = min(self.max_batch, len(self._queue))
                batch = [self._queue.popleft() for _ in range(count)]
                self._busy = count
            try:
                outcomes, shared = commit_together([work for work, _done in batch])
                if shared:
                    self.batches += 1
                self.committed += len(batch)
                for (_work, done), (result, error) in zip(batch, outcomes):
                    try:
                        done(result, error)
                    except Exception:  # noqa: BLE001 - one caller's report must not stop the rest
                        LOG.exception("Reporting a deferred commit failed")
            finally:
                with self._cond:
                    self._busy = 0
                    self._cond.notify_all()
