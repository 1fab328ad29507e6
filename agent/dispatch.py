"""The dispatch boundary: what runs around every RPC handler.

oslo.messaging calls an endpoint method with the deserialized request
context and the message's keyword arguments. A method decorated with
:func:`rpc_method` then goes through, in order:

1. the argument check: a missing or unexpected argument is
   :class:`~agent.exception.InvalidInput` naming it, before anything else;
   so is a request context whose ids or roles are not bounded strings
   (:func:`agent.validation.request_context`);
2. the policy check of ``custos:<method>`` (:mod:`agent.policy`);
3. one database session in one transaction, retried as a whole on a
   deadlock or a lost connection (:func:`db.api.run_in_transaction`);
   the handler receives it in a :class:`Request`. A method declared
   ``readonly`` gets a session without a write transaction; one declared
   ``read_first`` too, and runs again in a write transaction only when it
   tries to write (:class:`db.api.WriteNeeded`). A method
   declared ``grouped`` may share its transaction with other requests of
   the same method that arrive together (:mod:`db.group_commit`); it
   still returns only once its work is committed. A method
   declared with a ``retry_deadline`` is also run again in a fresh
   transaction when it raises :class:`~agent.drivers.base.RetryRequest`,
   until the deadline. A method declared ``remembered`` also keeps its
   answer in that transaction, and a copy of the same request delivered
   again gets that answer (:mod:`agent.answers`);
4. after the commit, the notifications the handler queued are sent;
5. an expected failure (any :class:`~agent.exception.CustosException`)
   goes back to the caller without a traceback in the agent's log, after
   the rollback and after sending the notifications the handler queued
   with ``even_on_failure``; anything else is logged with its traceback
   and reaches the caller as oslo.messaging's ``RemoteError``. Either way
   the worker keeps serving.

Handlers open no transaction and send no notification themselves: what a
request needs beyond this is added here, once, as an option that changes
nothing for the methods that do not ask for it.
"""

from __future__ import annotations

import functools
import inspect
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import oslo_messaging as messaging
from sqlalchemy.orm import Session

from agent import exception, policy, validation
from agent.answers import AnswerBook
from agent.drivers.base import RetryRequest
from db import api as db_api
from db.group_commit import GroupCommit
from rpcapi import RPC_API_VERSION

if TYPE_CHECKING:
    from agent.service import Runtime

LOG = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

Notification = tuple[str, dict[str, Any], str]

# Pauses between runs of a request whose handler asked to run again: the
# request that won the race may not have committed yet.
FIRST_PAUSE = 0.01
MAX_PAUSE = 0.25


@dataclass
class Request:
    """What a handler works with for one RPC request.

    :ivar context: the caller's :class:`agent.context.RequestContext`.
    :ivar method: the RPC method being served.
    """

    context: Any
    db_session: Session | None = None
    method: str | None = None
    notifications: list[Notification] = field(default_factory=list)
    #: The queued notifications that also go out when the request fails.
    failure_notifications: list[Notification] = field(default_factory=list)

    @property
    def session(self) -> Session:
        """The request's database session.

        :raises RuntimeError: in a handler declared ``transactional=False``,
            which has no session of its own.
        """
        if self.db_session is None:
            raise RuntimeError("this RPC method runs without a request transaction")
        return self.db_session

    @functools.cached_property
    def scope(self) -> policy.Scope:
        """Which projects' resources the caller sees (:func:`agent.policy.scope`)."""
        return policy.scope(self.context, self.method)

    def notify(self, event_type: str, payload: dict[str, Any], priority: str = "info", *,
               even_on_failure: bool = False) -> None:
        """Queue a notification, sent only once the transaction commits.

        The payload names what changed; it must never hold a secret value,
        password, token or key.

        :param even_on_failure: also send it when the request then fails
            with an expected error (after the rollback): for events about
            the failure itself, which the operator must hear either way.
        """
        event = (event_type, payload, priority)
        self.notifications.append(event)
        if even_on_failure:
            self.failure_notifications.append(event)

    def run_in_transaction(self, work: Callable[[Session], T]) -> T:
        """Run ``work(session)`` in a short transaction of its own.

        For a method declared ``transactional=False`` that needs the
        database only now and then, and must not hold a connection for the
        rest of the request. Retried as a whole as a request's transaction is.

        :returns: what ``work`` returned, after the commit.
        :raises DatabaseUnavailable: when the database stays out of reach.
        :raises RuntimeError: in a method that has a request transaction,
            where a second one would not commit or fail with it.
        """
        if self.db_session is not None:
            raise RuntimeError("this RPC method already runs in a request transaction")
        return db_api.run_in_transaction(work)


def _parameters(signature: inspect.Signature) -> tuple[frozenset[str], tuple[str, ...]]:
    """Return a handler's RPC argument names and the required ones among them."""
    params = list(signature.parameters.values())[2:]  # self, request
    names = frozenset(p.name for p in params if p.kind is not p.VAR_KEYWORD)
    required = tuple(p.name for p in params if p.default is p.empty)
    return names, required


def _check_arguments(names: frozenset[str], required: tuple[str, ...],
                     kwargs: dict[str, Any]) -> None:
    for name in kwargs:
        if name not in names:
            raise exception.InvalidInput(field=name, reason="unexpected argument")
    for name in required:
        if name not in kwargs:
            raise exception.InvalidInput(field=name, reason="missing argument")


def _read_first(name: str, work: Callable[[Session], T], retry_deadline: float) -> T:
    """Run ``work`` without a write transaction; in one if it tries to write."""
    try:
        return db_api.run_in_transaction(work, read_only=True)
    except (db_api.WriteNeeded, RetryRequest):
        return _run_transaction(name, work, retry_deadline)


def _run_transaction(name: str, work: Callable[[Session], T], retry_deadline: float,
                     readonly: bool = False) -> T:
    """Run ``work`` in a transaction; again in a fresh one on RetryRequest.

    :raises: the retry request's ``give_up`` error once ``retry_deadline``
        seconds have passed; the RetryRequest itself when it names none or
        the method has no deadline.
    """
    if retry_deadline <= 0:
        return db_api.run_in_transaction(work, read_only=readonly)
    deadline = time.monotonic() + retry_deadline
    pause = FIRST_PAUSE
    while True:
        try:
            return db_api.run_in_transaction(work, read_only=readonly)
        except RetryRequest as retry:
            if time.monotonic() + pause > deadline:
                if retry.give_up is None:
                    raise
                raise retry.give_up from None
            LOG.debug("%s lost a race (%s); running it again", name, retry)
            time.sleep(pause * random.uniform(0.5, 1.5))
            pause = min(pause * 2, MAX_PAUSE)


def _run_remembered(book: AnswerBook, ctxt: Any, name: str, work: Callable[[Session], T],
                   retry_deadline: float, holder: list[Request]) -> T:
    """Run ``work`` keeping its answer; answer a copy of a served request as then.

    A copy of a request answered before does not run. One that runs while
    the first is in flight and fails, or whose record clashes with the
    first one's on commit, has written nothing. Either gets the answer
    kept for the first and sends no notification.
    """
    key = book.key(ctxt)
    if key is None:
        return _run_transaction(name, work, retry_deadline)
    # Looked up before running: an ephemeral secret lives in this agent's
    # memory, which a rollback would not take back.
    found, answer = book.recall(key, name)
    if not found:
        try:
            result = _run_transaction(name, book.recording(work, key, name), retry_deadline)
        except Exception as error:
            try:
                found, answer = book.recall(key, name)
            except Exception:  # noqa: BLE001 - the request's own error is the one to report
                LOG.warning("%s: could not look for an earlier answer", name)
                raise error from None
            if not found:
                raise
        else:
            book.prune_if_due()
            return result
    LOG.info("%s: this request was served before; giving the answer it got then", name)
    holder[:] = [Request(ctxt, method=name)]
    return answer


def rpc_method(transactional: bool = True, retry_deadline: float = 0.0,
               readonly: bool = False, grouped: bool = False,
               read_first: bool = False, remembered: bool = False) -> Callable[[F], F]:
    """Make an endpoint method an RPC method behind the dispatch boundary.

    The decorated function is written as ``handler(self, request, **args)``;
    on the bus it is called as ``method(context, **args)``.

    :param transactional: open a database session for the handler.
    :param retry_deadline: seconds during which a handler raising
        :class:`~agent.drivers.base.RetryRequest` is run again in a fresh
        transaction (0: a RetryRequest is an unexpected error).
    :param readonly: the handler only reads: its session runs without a
        write transaction (:func:`db.api.transaction`), and a write in it
        fails.
    :param read_first: the handler usually only reads: it runs as
        ``readonly`` first, and when it tries to write (before anything is
        written) it runs again from the start in a write transaction.
    :param grouped: requests of this method that arrive together may
        commit in one transaction (:class:`db.group_commit.GroupCommit`),
        for casts that write a row or two. Not with ``readonly`` or a
        ``retry_deadline``.
    :param remembered: a second run of the same request would not answer
        as the first (it creates or deletes): keep the answer, and give it
        to a copy of the request that arrives again
        (:class:`agent.answers.AnswerBook`). Only for methods whose answer
        holds no secret: it is stored as it is.
    :raises ValueError: for ``grouped`` with ``readonly``,
        ``retry_deadline`` or without ``transactional``; for ``read_first``
        with ``readonly``, ``grouped`` or without ``transactional``; for
        ``remembered`` with ``readonly``, ``read_first``, ``grouped`` or
        without ``transactional``.
    """
    if grouped and (readonly or retry_deadline or not transactional):
        raise ValueError("a grouped method writes in a request transaction, "
                         "without retry_deadline")
    if read_first and (readonly or grouped or not transactional):
        raise ValueError("a read-first method may write in a request transaction of its own")
    if remembered and (readonly or read_first or grouped or not transactional):
        raise ValueError("a remembered method writes in a request transaction of its own")

    def decorator(func: F) -> F:
        # Worked out once here, not on every call.
        names, required = _parameters(inspect.signature(func))
        name = func.__name__
        group = GroupCommit() if grouped else None

        @functools.wraps(func)
        def wrapper(self: Any, ctxt: Any, **kwargs: Any) -> Any:
            holder: list[Request] = []
            try:
                _check_arguments(names, required, kwargs)
                validation.request_context(ctxt)
                policy.authorize(ctxt, name)
                if transactional:

                    def work(session: Session) -> Any:
                        # A retry starts from a clean queue: notifications
                        # of a rolled-back attempt must never be sent.
                        holder[:] = [Request(ctxt, session, name)]
                        return func(self, holder[0], **kwargs)

                    if group is not None:
                        result = group.run(work)
                    elif read_first:
                        result = _read_first(name, work, retry_deadline)
                    elif remembered:
                        result = _run_remembered(self.runtime.answers, ctxt, name, work,
                                                 retry_deadline, holder)
                    else:
                        result = _run_transaction(name, work, retry_deadline, readonly)
                else:
                    holder[:] = [Request(ctxt, method=name)]
                    result = func(self, holder[0], **kwargs)
                self.runtime.send_notifications(ctxt, holder[0].notifications)
                return result
            except exception.CustosException as error:
                LOG.info("%s refused: %s (%s)", name, error.code, error.msg)
                if holder and holder[0].failure_notifications:
                    self.runtime.send_notifications(ctxt, holder[0].failure_notifications)
                raise messaging.ExpectedException() from error

        wrapper.rpc_method = True  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator


class Endpoint:
    """Base of the agent's RPC endpoints; each holds the shared runtime.

    An endpoint reads the runtime's parts and never adds to it.
    """

    target = messaging.Target(version=RPC_API_VERSION)

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime


class UnknownMethodEndpoint:
    """The last endpoint: answers any other method name with UnknownMethod.

    Without it, oslo.messaging would answer with its own ``NoSuchMethod``,
    which reaches a caller as an untyped ``RemoteError``.
    """

    target = messaging.Target(version=RPC_API_VERSION)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        # oslo_* names are oslo.messaging's own probes (oslo_rpc_server_ping).
        if name.startswith(("_", "oslo_")) or name == "target":
            raise AttributeError(name)

        def unknown(ctxt: Any, **kwargs: Any) -> Any:
            LOG.info("Refused unknown RPC method %r", name[:64])
            try:
                raise exception.UnknownMethod(method=name[:64])
            except exception.UnknownMethod:
                raise messaging.ExpectedException()

        return unknown
