"""How an RPC method's work meets the database: one mode per method.

:func:`agent.dispatch.rpc_method` takes one of these as ``mode``. Each
knows how to run the method's work, a callable taking the request's
session (None for :data:`NO_TRANSACTION`); the dispatch boundary builds
the :class:`~agent.dispatch.Request` inside it, so that a run repeated
after a rollback starts from a clean queue of notifications.

- :class:`Write` (the default): one write transaction, retried as a whole
  on a deadlock or a lost connection; with a ``retry_deadline``, also run
  again when the handler raises :class:`~agent.drivers.base.RetryRequest`.
- :data:`READ_ONLY`: a session without a write transaction; a write fails.
- :class:`ReadFirst`: read-only first, and again in a write transaction
  only when the handler tries to write (:class:`db.api.WriteNeeded`).
- :class:`Grouped`: requests that arrive together may share one
  transaction (:mod:`db.group_commit`); a call returns once committed, a
  cast as soon as its work is queued for a committer thread, which runs
  the rest of the request after the commit (:attr:`Call.deferred`).
- :class:`Remembered`: a write whose answer is kept, so that a copy of
  the same request gets that answer instead of running again
  (:mod:`agent.answers`).
- :data:`NO_TRANSACTION`: no session; the handler asks for short ones
  itself (:meth:`agent.dispatch.Request.run_in_transaction`).

Combinations that make no sense (a grouped read-only method, a remembered
method without a transaction) cannot be written.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Callable
from typing import Any, Protocol

from agent.drivers.base import RetryRequest
from db import api as db_api
from db.group_commit import DeferredCommits, GroupCommit

LOG = logging.getLogger(__name__)

#: The work of one request: takes its session (None without a transaction).
Work = Callable[[Any], Any]

# Pauses between runs of a request whose handler asked to run again: the
# request that won the race may not have committed yet.
FIRST_PAUSE = 0.01
MAX_PAUSE = 0.25


@dataclasses.dataclass
class Call:
    """What a mode may need to know about the request it runs.

    :ivar method: the RPC method's name.
    :ivar context: the identity the request runs as.
    :ivar arguments: the method's arguments as they came.
    :ivar runtime: the agent's :class:`~agent.runtime.Runtime`.
    :ivar served_before: set by :class:`Remembered` when the answer came
        from an earlier copy of the request (nothing ran, nothing to announce).
    :ivar deferred: for a request whose caller does not wait (a cast):
        ``deferred(result, error)`` finishes it once its work has an
        outcome. A mode that returns :data:`DEFERRED` calls it later, from
        another thread; any other mode ignores it.
    """

    method: str
    context: Any
    arguments: dict[str, Any]
    runtime: Any
    served_before: bool = False
    deferred: Callable[[Any, BaseException | None], None] | None = None


#: What :meth:`Mode.run` returns when the work will run later (:attr:`Call.deferred`).
DEFERRED = object()

# Every Grouped mode's committer, for drain_deferred().
_COMMITTERS: list[DeferredCommits] = []


class Mode(Protocol):
    """Runs a method's work in the transaction this mode stands for."""

    def run(self, call: Call, work: Work) -> Any:
        """Run ``work`` and return its result once committed."""


def _with_retry(name: str, work: Work, retry_deadline: float, read_only: bool = False) -> Any:
    """Run ``work`` in a transaction; again in a fresh one on RetryRequest.

    :raises: the retry request's ``give_up`` error once ``retry_deadline``
        seconds have passed; the RetryRequest itself when it names none or
        the method has no deadline.
    """
    if retry_deadline <= 0:
        return db_api.run_in_transaction(work, read_only=read_only)
    deadline = time.monotonic() + retry_deadline
    pause = FIRST_PAUSE
    while True:
        try:
            return db_api.run_in_transaction(work, read_only=read_only)
        except RetryRequest as retry:
            if time.monotonic() + pause > deadline:
                if retry.give_up is None:
                    raise
                raise retry.give_up from None
            LOG.debug("%s lost a race (%s); running it again", name, retry)
            time.sleep(pause * random.uniform(0.5, 1.5))
            pause = min(pause * 2, MAX_PAUSE)


@dataclasses.dataclass(frozen=True)
class NoTransaction:
    """No request session: for methods that touch the database now and then, or never."""

    def run(self, call: Call, work: Work) -> Any:
        return work(None)


@dataclasses.dataclass(frozen=True)
class ReadOnly:
    """A session without a write transaction."""

    def run(self, call: Call, work: Work) -> Any:
        return db_api.run_in_transaction(work, read_only=True)


@dataclasses.dataclass(frozen=True)
class Write:
    """One write transaction, retried as a whole.

    :param retry_deadline: seconds during which a handler raising
        :class:`~agent.drivers.base.RetryRequest` runs again in a fresh
        transaction (0: a RetryRequest is an unexpected error).
    """

    retry_deadline: float = 0.0

    def run(self, call: Call, work: Work) -> Any:
        return _with_retry(call.method, work, self.retry_deadline)


@dataclasses.dataclass(frozen=True)
class ReadFirst:
    """Read-only first; from the start in a write transaction when the handler writes.

    :param retry_deadline: as :class:`Write`'s, for the write run.
    """

    retry_deadline: float = 0.0

    def run(self, call: Call, work: Work) -> Any:
        try:
            return db_api.run_in_transaction(work, read_only=True)
        except (db_api.WriteNeeded, RetryRequest):
            return _with_retry(call.method, work, self.retry_deadline)


class Grouped:
    """Requests of one method that arrive together commit in one transaction.

    For casts that write a row or two. A call waits for its commit
    (:class:`~db.group_commit.GroupCommit`); a cast is handed to a
    committer thread (:class:`~db.group_commit.DeferredCommits`), which
    commits casts in batches and then finishes each (``call.deferred``),
    so the worker that checked it takes the next message at once. Each
    method needs an instance of its own (it holds the method's queues).
    """

    def __init__(self) -> None:
        self.group = GroupCommit()
        self.committer = DeferredCommits("casts")
        _COMMITTERS.append(self.committer)

    def run(self, call: Call, work: Work) -> Any:
        if call.deferred is not None and self.committer.submit(work, call.deferred):
            return DEFERRED
        return self.group.run(work)


def drain_deferred(timeout: float) -> bool:
    """Wait until every cast handed to a committer has been committed and finished.

    :returns: False when some were still waiting after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    return all(committer.drain(max(0.0, deadline - time.monotonic()))
               for committer in list(_COMMITTERS))


@dataclasses.dataclass(frozen=True)
class Remembered:
    """A write whose answer is kept for a copy of the same request.

    For methods that create or delete, whose second run would not answer
    as the first did. Only for answers that hold no secret: an answer is
    stored as it is.

    :param retry_deadline: as :class:`Write`'s.
    """

    retry_deadline: float = 0.0

    def run(self, call: Call, work: Work) -> Any:
        book = call.runtime.answers
        key = book.key(call.context, call.method, call.arguments)
        if key is None:
            return _with_retry(call.method, work, self.retry_deadline)
        # Looked up before running: an ephemeral secret lives in this agent's
        # memory, which a rollback would not take back.
        found, answer = book.recall(key, call.method)
        if not found:
            try:
                result = _with_retry(call.method, book.recording(work, key, call.method),
                                     self.retry_deadline)
            except Exception as error:
                try:
                    found, answer = book.recall(key, call.method)
                except Exception:  # noqa: BLE001 - the request's own error is the one to report
                    LOG.warning("%s: could not look for an earlier answer", call.method)
                    raise error from None
                if not found:
                    raise
            else:
                book.prune_if_due()
                return result
        LOG.info("%s: this request was served before; giving the answer it got then",
                 call.method)
        call.served_before = True
        return answer


#: The modes without parameters, shared by every method that uses them.
NO_TRANSACTION = NoTransaction()
READ_ONLY = ReadOnly()
WRITE = Write()
