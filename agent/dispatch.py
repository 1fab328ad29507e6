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
   the handler receives it in a :class:`Request`;
4. after the commit, the notifications the handler queued are sent;
5. an expected failure (any :class:`~agent.exception.CustosException`)
   goes back to the caller without a traceback in the agent's log; anything
   else is logged with its traceback and reaches the caller as
   oslo.messaging's ``RemoteError``. Either way the worker keeps serving.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import oslo_messaging as messaging
from sqlalchemy.orm import Session

from agent import exception, policy, validation
from db import api as db_api

LOG = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Request:
    """What a handler works with for one RPC request.

    :ivar context: the caller's :class:`agent.context.RequestContext`.
    """

    context: Any
    db_session: Session | None = None
    notifications: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)

    @property
    def session(self) -> Session:
        """The request's database session.

        :raises RuntimeError: in a handler declared ``transactional=False``,
            which has no session of its own.
        """
        if self.db_session is None:
            raise RuntimeError("this RPC method runs without a request transaction")
        return self.db_session

    def notify(self, event_type: str, payload: dict[str, Any], priority: str = "info") -> None:
        """Queue a notification, sent only once the transaction commits.

        The payload names what changed; it must never hold a secret value,
        password, token or key.
        """
        self.notifications.append((event_type, payload, priority))


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


def rpc_method(transactional: bool = True) -> Callable[[F], F]:
    """Make an endpoint method an RPC method behind the dispatch boundary.

    The decorated function is written as ``handler(self, request, **args)``;
    on the bus it is called as ``method(context, **args)``.

    :param transactional: open a database session for the handler.
    """

    def decorator(func: F) -> F:
        # Worked out once here, not on every call.
        names, required = _parameters(inspect.signature(func))
        name = func.__name__

        @functools.wraps(func)
        def wrapper(self: Any, ctxt: Any, **kwargs: Any) -> Any:
            try:
                _check_arguments(names, required, kwargs)
                validation.request_context(ctxt)
                policy.authorize(ctxt, name)
                if transactional:
                    holder: list[Request] = []

                    def work(session: Session) -> Any:
                        # A retry starts from a clean queue: notifications
                        # of a rolled-back attempt must never be sent.
                        holder[:] = [Request(ctxt, session)]
                        return func(self, holder[0], **kwargs)

                    result = db_api.run_in_transaction(work)
                    request = holder[0]
                else:
                    request = Request(ctxt)
                    result = func(self, request, **kwargs)
                self.runtime.send_notifications(ctxt, request.notifications)
                return result
            except exception.CustosException as error:
                LOG.info("%s refused: %s (%s)", name, error.code, error.msg)
                raise messaging.ExpectedException() from error

        wrapper.rpc_method = True  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator


class Endpoint:
    """Base of the agent's RPC endpoints; each holds the shared runtime."""

    target = messaging.Target(version="1.1")

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime


class UnknownMethodEndpoint:
    """The last endpoint: answers any other method name with UnknownMethod.

    Without it, oslo.messaging would answer with its own ``NoSuchMethod``,
    which reaches a caller as an untyped ``RemoteError``.
    """

    target = messaging.Target(version="1.1")

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
