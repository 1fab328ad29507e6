"""The dispatch boundary: what runs around every RPC handler.

oslo.messaging calls an endpoint method with the deserialized request
context and the message's keyword arguments. A method decorated with
:func:`rpc_method` then goes through, in order:

1. the argument check: a missing or unexpected argument is
   :class:`~agent.exception.InvalidInput` naming it, before anything else;
   so is a request context whose ids, roles or tokens are not bounded
   strings (:func:`agent.validation.request_context`);
2. authentication: the caller's tokens become the identity the rest of
   the request sees (:class:`agent.identity.authenticator.Authenticator`);
   with ``[auth] strategy = keystone`` nothing the message claims about
   its caller goes further. Only ``health`` skips it;
3. the policy check of ``custos:<method>`` (:mod:`agent.policy`);
4. the method's work in its transaction mode (:mod:`agent.transactions`):
   the handler receives a :class:`Request` holding the session;
5. after the commit, the notifications the handler queued are sent;
6. an expected failure (any :class:`~agent.exception.CustosException`)
   goes back to the caller without the agent's traceback, after the
   rollback and after sending the notifications the handler queued with
   ``even_on_failure``; anything else is logged with its traceback and
   reaches the caller as oslo.messaging's ``RemoteError``. Either way the
   worker keeps serving. A cast whose caller cannot be authenticated has
   nobody to tell: it is logged as an error (never its tokens) and dropped.

A cast of a method declared :class:`~agent.transactions.Grouped` has no
caller waiting: once checked, authenticated and authorised, its work is
queued for a committer thread, and steps 5 and 6 run there after its
batch's commit (:class:`_Finish`); the worker takes the next message.

Around all of it, each request is counted per method and outcome with its
latency and in-flight count (:mod:`agent.metrics`, children made when the
method is declared), and, when the caller sent an osprofiler trace the
agent may continue, the request, its policy check and its transaction
are spans of that trace (:mod:`agent.tracing`).

Only methods declared with :func:`rpc_method` can be reached from the bus
(the RPC server uses oslo.messaging's explicit access policy).

Handlers open no transaction and send no notification themselves: what a
request needs beyond this is added here, once, as an option that changes
nothing for the methods that do not ask for it.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import oslo_messaging as messaging
from sqlalchemy.orm import Session

from agent import answers, exception, metrics, policy, tracing, transactions, validation
from db import api as db_api
from rpcapi import RPC_API_VERSION

if TYPE_CHECKING:
    from agent.runtime import Runtime

LOG = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

Notification = tuple[str, dict[str, Any], str]


@dataclass
class Request:
    """What a handler works with for one RPC request.

    :ivar context: the caller's identity (:class:`agent.wire.RequestContext`),
        as authentication made it.
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

        :raises RuntimeError: in a handler declared without a transaction.
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

        For a method declared with :data:`agent.transactions.NO_TRANSACTION`
        that needs the database only now and then, and must not hold a
        connection for the rest of the request. Retried as a whole as a
        request's transaction is.

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


def expected(error: exception.CustosException) -> messaging.ExpectedException:
    """Return what carries ``error`` back to the caller, without the agent's traceback.

    oslo.messaging formats the traceback of the exception it is given into
    the reply, where it becomes part of the error's text at the caller.
    """
    error.__cause__ = error.__context__ = None
    wrapper = messaging.ExpectedException()
    wrapper.exc_info = (type(error), error.with_traceback(None), None)
    return wrapper


def _refused(runtime: Runtime, name: str, ctxt: Any, holder: list[Request],
             error: exception.CustosException) -> None:
    """Log an expected failure; send what its handler queued ``even_on_failure``."""
    LOG.info("%s refused: %s (%s)", name, error.code, error.msg)
    if holder and holder[0].failure_notifications:
        runtime.send_notifications(ctxt, holder[0].failure_notifications)


@dataclass
class _Finish:
    """The end of a request whose work a committer ran later (:attr:`transactions.Call.deferred`).

    What the dispatch boundary does after a request's transaction, done
    once the committer has the outcome: the notifications after the
    commit, the log line and failure notifications of an expected error,
    the traceback of any other, and the request's metrics.
    """

    runtime: Runtime
    name: str
    context: Any
    holder: list[Request]
    stats: metrics.MethodMetrics
    started: float

    def __call__(self, result: Any, error: BaseException | None) -> None:
        code: str | None = metrics.INTERNAL
        try:
            if error is None:
                if self.holder:
                    self.runtime.send_notifications(self.context,
                                                    self.holder[0].notifications)
                code = None
            elif isinstance(error, exception.CustosException):
                code = error.code
                _refused(self.runtime, self.name, self.context, self.holder, error)
            else:
                LOG.error("Exception while handling a %s cast", self.name,
                          exc_info=(type(error), error, error.__traceback__))
        finally:
            self.stats.done(code, time.perf_counter() - self.started)


def rpc_method(mode: transactions.Mode = transactions.WRITE, *,
               authenticated: bool = True, quick: bool = False) -> Callable[[F], F]:
    """Make an endpoint method an RPC method behind the dispatch boundary.

    The decorated function is written as ``handler(self, request, **args)``;
    on the bus it is called as ``method(context, **args)``.

    :param mode: how the method's work meets the database
        (:mod:`agent.transactions`); a write transaction by default.
    :param authenticated: the caller's tokens are checked first. Only a
        method anyone may call (``health``) leaves it out.
    :param quick: its work needs nothing but the agent's memory and one
        short transaction: no other service, no long write. Such a request
        may be served on the thread that read it off the bus
        (:class:`agent.rpc.RPCServer`).
    """

    def decorator(func: F) -> F:
        # Worked out once here, not on every call.
        names, required = _parameters(inspect.signature(func))
        name = func.__name__

        stats = metrics.MethodMetrics(name)
        mode_name = type(mode).__name__

        @functools.wraps(func)
        def wrapper(self: Any, ctxt: Any, **kwargs: Any) -> Any:
            holder: list[Request] = []
            stats.in_flight.inc()
            started = time.perf_counter()
            code: str | None = metrics.INTERNAL
            deferred = False
            try:
                with tracing.span("rpc", method=name):
                    _check_arguments(names, required, kwargs)
                    validation.request_context(ctxt)
                    if authenticated:
                        ctxt = self.runtime.identity.identify(ctxt, name)
                    with tracing.span("policy", method=name):
                        policy.authorize(ctxt, name)

                    def work(session: Session | None) -> Any:
                        # A retry starts from a clean queue: notifications
                        # of a rolled-back attempt must never be sent.
                        holder[:] = [Request(ctxt, session, name)]
                        return func(self, holder[0], **kwargs)

                    call = transactions.Call(name, ctxt, kwargs, self.runtime)
                    if answers.IS_CAST.get():
                        call.deferred = _Finish(self.runtime, name, ctxt, holder, stats,
                                                started)
                    with tracing.span("transaction", mode=mode_name):
                        result = mode.run(call, work)
                    if result is transactions.DEFERRED:
                        deferred = True
                        return None
                    if holder and not call.served_before:
                        self.runtime.send_notifications(ctxt, holder[0].notifications)
                    code = None
                    return result
            except (exception.Unauthorized, exception.AuthUnavailable) as error:
                code = error.code
                if answers.IS_CAST.get():
                    LOG.error("Dropped a %s cast: %s (%s)", name, error.code, error.msg)
                else:
                    LOG.info("%s refused: %s (%s)", name, error.code, error.msg)
                raise expected(error) from None
            except exception.CustosException as error:
                code = error.code
                _refused(self.runtime, name, ctxt, holder, error)
                raise expected(error) from None
            finally:
                if not deferred:
                    stats.done(code, time.perf_counter() - started)

        wrapper.rpc_method = True  # type: ignore[attr-defined]
        wrapper.rpc_mode = mode  # type: ignore[attr-defined]
        wrapper.rpc_quick = quick  # type: ignore[attr-defined]
        # What oslo.messaging's explicit access policy looks for.
        wrapper.exposed = True  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator


def _is_cast(incoming: Any) -> bool:
    """True when nobody waits for the message's reply.

    The rabbit driver's message has no reply queue for a cast; the
    ``fake:`` driver's keeps it privately. A message of any other driver
    counts as a call, which is never deferred.
    """
    for name in ("reply_q", "_reply_q"):
        if hasattr(incoming, name):
            return getattr(incoming, name) is None
    return False


class RequestDispatcher(messaging.RPCDispatcher):
    """oslo.messaging's RPC dispatcher, telling the boundary about each message.

    It makes the message's id (:data:`agent.answers.REQUEST_ID`) and
    whether it is a cast (:data:`agent.answers.IS_CAST`) known to the
    request, and answers a method no endpoint exposes with
    :class:`~agent.exception.UnknownMethod`, not an untyped error.
    """

    def dispatch(self, incoming: Any) -> Any:
        unique_id = getattr(incoming, "unique_id", None)
        if not isinstance(unique_id, str) or not answers.REQUEST_ID_FORM.fullmatch(unique_id):
            unique_id = None
        token = answers.REQUEST_ID.set(unique_id)
        cast = answers.IS_CAST.set(_is_cast(incoming))
        traced = False
        try:
            traced = tracing.continue_trace(getattr(incoming, "ctxt", None))
            return super().dispatch(incoming)
        except exception.InvalidInput as error:
            LOG.info("Refused a request: %s (%s)", error.code, error.msg)
            raise expected(error) from None
        except messaging.NoSuchMethod as error:
            LOG.info("Refused unknown RPC method %r", str(error.method)[:64])
            raise expected(exception.UnknownMethod(method=str(error.method)[:64])) from None
        finally:
            if traced:
                tracing.end()
            answers.IS_CAST.reset(cast)
            answers.REQUEST_ID.reset(token)


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
    which reaches a caller as an untyped ``RemoteError``. A name that is
    an attribute, but not an RPC method, of an earlier endpoint ends here
    too.
    """

    target = messaging.Target(version=RPC_API_VERSION)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        # oslo_* names are oslo.messaging's own probes (oslo_rpc_server_ping).
        if name.startswith(("_", "oslo_")) or name == "target":
            raise AttributeError(name)

        def unknown(ctxt: Any, **kwargs: Any) -> Any:
            LOG.info("Refused unknown RPC method %r", name[:64])
            raise expected(exception.UnknownMethod(method=name[:64]))

        unknown.exposed = True  # type: ignore[attr-defined]
        return unknown
