"""Remembered answers: a request that arrives twice changes state once.

A call can reach the agents twice. RabbitMQ delivers it again when the
agent's acknowledgement was lost with its connection (a broker node went
away), and a client publishes it again when it lost the publish confirm.
The copy may go to another agent. oslo.messaging drops a copy only when
the same listener saw it among its last few messages.

For most methods a second run answers as the first did. For the ones that
create or delete, it would not: a second ``secret_generate`` meets the
first one's usage and fails with ``SecretUsageConflict``, a second
``secret_undefine`` finds nothing, a second ``key_create`` makes another
key. The caller may get that second answer, and then believes that a
change which was committed failed.

For those methods (:class:`agent.transactions.Remembered`) the boundary
keeps the answer in the request's own transaction, keyed by the caller's
project and a digest of the message's id, the caller (user, project,
service user), the method and its arguments: only a copy of the very same
request gets the answer, never another request that reuses the id. A later copy looks
for that record before it runs (outside its write transaction, which then
starts as any other) and is answered from it. A copy that runs while the
first is still in flight either fails (conflict, not found) or clashes
with the first one's key on commit; all it wrote in the database is
rolled back, and it is answered from the record too. A copy from another
project never shares a key with the first, so it never sees that answer.
Records older than ``[DEFAULT] remember_answers_seconds`` are deleted.
"""

from __future__ import annotations

import contextvars
import datetime
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from db import api as db_api
from db import models, upsert

LOG = logging.getLogger(__name__)

T = TypeVar("T")

#: The id of the message being dispatched on this thread, set by
#: :class:`agent.dispatch.RequestDispatcher`; None outside a dispatch or when the message
#: carries none (oslo.messaging's ``fake:`` driver).
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "custos_request_id", default=None)

#: True while the message being dispatched on this thread is a cast (no
#: reply goes back to its sender).
IS_CAST: contextvars.ContextVar[bool] = contextvars.ContextVar("custos_is_cast", default=False)

#: What a message id must look like to be used as a key (oslo.messaging sends a
#: uuid4 in hex).
REQUEST_ID_FORM = re.compile(r"[0-9A-Za-z-]{1,64}")

#: Seconds between two deletions of old records by one agent.
PRUNE_EVERY = 60.0


class Key(NamedTuple):
    """Whose answer: a digest of the request, and the caller's project ("" for none)."""

    request_id: str
    project_id: str


class AnswerBook:
    """Keeps, finds and forgets the answers of remembered methods.

    :param keep_seconds: how long an answer is kept; 0 keeps none, and a
        request that arrives twice then runs twice.
    """

    def __init__(self, keep_seconds: int) -> None:
        self.keep_seconds = keep_seconds
        self._pruning = threading.Lock()
        self._next_prune = 0.0

    def key(self, ctxt: Any, method: str, arguments: dict[str, Any]) -> Key | None:
        """Return the key of the request being dispatched, or None to keep nothing.

        :param ctxt: the caller's identity, as authentication made it.
        :param method: the RPC method.
        :param arguments: the method's arguments as they came (JSON-safe).
        """
        request_id = REQUEST_ID.get()
        if request_id is None or self.keep_seconds <= 0:
            return None
        project = getattr(ctxt, "project_id", None) or ""
        request = [request_id, getattr(ctxt, "user_id", None), project,
                   getattr(ctxt, "service_user_id", None), method, arguments]
        try:
            text = json.dumps(request, sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError):
            return None
        return Key(hashlib.sha256(text.encode()).hexdigest(), project)

    def recording(self, work: Callable[[Session], T], key: Key,
                  method: str) -> Callable[[Session], T]:
        """Return ``work`` that also records its answer in its own transaction."""

        def record(session: Session) -> T:
            result = work(session)
            session.add(models.RememberedAnswer(
                request_id=key.request_id, project_id=key.project_id, method=method,
                answer=result))
            session.flush()
            return result

        return record

    def recall(self, key: Key, method: str) -> tuple[bool, Any]:
        """Look up the answer kept for ``key``.

        :returns: ``(True, answer)`` when ``method`` answered this request
            already; ``(False, None)`` otherwise.
        :raises DatabaseUnavailable: when the database stays out of reach.
        """

        def find(session: Session) -> tuple[bool, Any]:
            row = session.get(models.RememberedAnswer, (key.request_id, key.project_id, method))
            if row is None:
                return False, None
            return True, row.answer

        return db_api.run_in_transaction(find, read_only=True)

    def prune_if_due(self) -> None:
        """Delete the expired answers, at most once every :data:`PRUNE_EVERY` seconds.

        Called after a remembered request committed; a failure is logged and
        left to the next time, as the request itself succeeded.
        """
        now = time.monotonic()
        if now < self._next_prune or not self._pruning.acquire(blocking=False):
            return
        try:
            self._next_prune = now + PRUNE_EVERY
            cutoff = models.utcnow() - datetime.timedelta(seconds=self.keep_seconds)
            removed = db_api.run_in_transaction(lambda session: forget_before(session, cutoff))
            if removed:
                LOG.debug("Forgot %d remembered answers", removed)
        except Exception as error:  # noqa: BLE001 - the next request tries again
            LOG.warning("Could not delete expired remembered answers: %s",
                        type(error).__name__)
        finally:
            self._pruning.release()


def forget_before(session: Session, cutoff: datetime.datetime) -> int:
    """Delete the answers recorded before ``cutoff``; returns how many."""
    table = models.RememberedAnswer
    return upsert.rowcount(session.execute(sa.delete(table).where(table.created_at < cutoff)))
