"""Helpers shared by unit and functional tests: contexts and a notification recorder.

The stub HTTP server that plays vendordata targets and Keystone is
:mod:`tests.stub_server`; the ``server`` fixture in tests/conftest.py
starts it for either suite.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from agent.context import RequestContext

PROJECT = "9f2e6b1c4d5a4e3f8a7b6c5d4e3f2a1b"
OTHER_PROJECT = "1a2b3c4d5e6f47a8b9c0d1e2f3a4b5c6"


def make_context(project_id: str | None = PROJECT, roles: list[str] | None = None,
                 service_roles: list[str] | None = None, **kwargs: Any) -> RequestContext:
    """A context as a caller builds it; user roles default to ``member``."""
    return RequestContext(project_id=project_id, user_id=kwargs.pop("user_id", uuid.uuid4().hex),
                          roles=["member"] if roles is None else roles,
                          service_roles=service_roles or [], overwrite=False, **kwargs)


def member(project_id: str = PROJECT, **kwargs: Any) -> RequestContext:
    """An operator of ``project_id`` with a user token only."""
    return make_context(project_id, ["member"], [], **kwargs)


def admin(project_id: str = PROJECT, **kwargs: Any) -> RequestContext:
    """The cloud administrator (user token only)."""
    return make_context(project_id, ["admin"], [], **kwargs)


def member_with_service(project_id: str = PROJECT, **kwargs: Any) -> RequestContext:
    """A user token of an operator together with a service token."""
    return make_context(project_id, ["member"], ["service"], **kwargs)


def service_only(project_id: str | None = None, **kwargs: Any) -> RequestContext:
    """A service token alone: no operator role in the user token."""
    return make_context(project_id, [], ["service"], **kwargs)


def auditor(project_id: str | None = None, **kwargs: Any) -> RequestContext:
    """A service token with the audit role alone."""
    return make_context(project_id, [], ["service_auditor"], **kwargs)


def nobody(project_id: str = PROJECT, **kwargs: Any) -> RequestContext:
    """A context with no role at all."""
    return make_context(project_id, [], [], **kwargs)


class NotificationRecorder:
    """An oslo.messaging notification endpoint that keeps what it hears.

    Each notification is kept as ``{priority, publisher_id, event_type,
    payload, context}``.

    :param forward: also hand each one to this function (the log canary).
    """

    def __init__(self, forward: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.received: list[dict[str, Any]] = []
        self._forward = forward
        self._lock = threading.Lock()
        self._taken = 0

    def _keep(self, priority: str, ctxt: Any, publisher_id: str, event_type: str,
              payload: Any) -> None:
        notification = {"priority": priority, "context": ctxt, "publisher_id": publisher_id,
                        "event_type": event_type, "payload": payload}
        with self._lock:
            self.received.append(notification)
        if self._forward is not None:
            self._forward(notification)

    def info(self, ctxt: Any, publisher_id: str, event_type: str, payload: Any,
             metadata: Any) -> None:
        self._keep("info", ctxt, publisher_id, event_type, payload)

    def warn(self, ctxt: Any, publisher_id: str, event_type: str, payload: Any,
             metadata: Any) -> None:
        self._keep("warn", ctxt, publisher_id, event_type, payload)

    def error(self, ctxt: Any, publisher_id: str, event_type: str, payload: Any,
              metadata: Any) -> None:
        self._keep("error", ctxt, publisher_id, event_type, payload)

    def of(self, event_type: str, **payload: Any) -> list[dict[str, Any]]:
        """Notifications so far of ``event_type`` whose payload holds ``payload``."""
        with self._lock:
            return [n for n in self.received if n["event_type"] == event_type
                    and all(n["payload"].get(k) == v for k, v in payload.items())]

    def wait_for(self, event_type: str, timeout: float = 20) -> dict[str, Any]:
        """Return the next notification of ``event_type`` not returned before.

        :raises AssertionError: when none arrives within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                for index in range(self._taken, len(self.received)):
                    if self.received[index]["event_type"] == event_type:
                        self._taken = index + 1
                        return self.received[index]
                self._taken = len(self.received)
            if time.monotonic() > deadline:
                raise AssertionError(f"no {event_type} notification")
            time.sleep(0.02)


def run_at_once(calls: list[Callable[[], Any]], timeout: float = 30) -> list[BaseException]:
    """Run each of ``calls`` in a thread of its own and wait for them all.

    :returns: what the calls raised (assertion failures included), for
        the caller to assert there is nothing.
    """
    failures: list[BaseException] = []

    def run(call: Callable[[], Any]) -> None:
        try:
            call()
        except BaseException as error:  # noqa: BLE001 - handed to the caller
            failures.append(error)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return failures


def eventually(check: Callable[[], Any], timeout: float) -> Any:
    """Poll ``check`` until it returns something true; after ``timeout`` seconds
    return its last result, for the caller's assertion to show."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


def log_lines(proc: Any, text: str) -> list[str]:
    """The lines of an agent's log (``proc.log()``) that contain ``text``."""
    return [line for line in proc.log().splitlines() if text in line]


class RecordingRuntime:
    """A runtime stand-in for endpoints under test: records what the boundary sends.

    Its authenticator is the real one, built from the global configuration
    (the unit tests' ``conf`` fixture sets ``[auth] strategy = trusted``).
    """

    def __init__(self) -> None:
        from oslo_config import cfg

        from agent.identity.authenticator import Authenticator

        self.sent: list[Any] = []
        self.identity = Authenticator(cfg.CONF)

    def send_notifications(self, ctxt: Any, notifications: Any) -> None:
        self.sent.extend(notifications)
