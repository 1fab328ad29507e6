"""The agent's notifications, sent from a thread of their own.

A request's notifications go out only after its transaction commits, but
the caller must not wait for the broker to take them: the reply leaves at
once and :class:`NotificationSender` publishes behind it, in order. A
caller may therefore see a notification arrive just after the reply that
announced the change.

* An RPC request served inside :func:`after_reply` (the agent's RPC
  server, :class:`agent.rpc.RPCServer`) has its notifications published
  by the thread that served it once the reply has left, when nothing
  else is waiting to be sent: handing them to the sender's thread cost a
  thread wake-up and a cache-cold publish per request. Anything else, or
  anything that arrives while such a publish or the queue is not done,
  goes to the queue, and the queue's thread waits for the publish in
  progress: a notification never overtakes one committed before it. A
  publish that fails on the serving thread is handed to the queue, at
  its head, and retried there.

* The queue is bounded (``max_queued``): when the broker is slower than
  the requests for long enough, new notifications are dropped, counted in
  :attr:`NotificationSender.dropped`, and logged once per burst with the
  count only, never a payload.
* Each notification is retried as a whole until ``retry_deadline``
  seconds have passed, so a broker node that goes away does not lose an
  announced change: every attempt reconnects through the nodes of
  ``transport_url``.
* :meth:`NotificationSender.close` (graceful shutdown) sends what is
  queued before the transports close.

:class:`BrokerNotifier` is the publisher the agent uses: oslo.messaging's
``messagingv2`` format, but a failed publish raises instead of being
logged with its payload, which is what makes the retry possible.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import oslo_messaging as messaging

from agent import metrics

LOG = logging.getLogger(__name__)

Notification = tuple[str, dict[str, Any], str]

#: Notifications waiting for the broker before new ones are dropped.
MAX_QUEUED = 10_000
#: Seconds one notification keeps being retried while the broker is away.
RETRY_DEADLINE = 30.0
FIRST_PAUSE = 0.1
MAX_PAUSE = 2.0
#: Reconnection attempts of the transport within one send attempt.
SEND_RETRY = 1

# What the request on this thread committed, to be published once its
# reply has left (see after_reply()).
_held = threading.local()


@contextlib.contextmanager
def after_reply() -> Iterator[None]:
    """Serve one RPC request whose notifications this thread publishes at the end.

    The block must send the request's reply; on leaving it, whatever
    :meth:`NotificationSender.submit` held for this thread is published
    here, on this thread. Never raises for a failed publish: that
    notification goes to its sender's queue and is retried there.
    """
    held: list[tuple[NotificationSender, Any, list[Notification]]] = []
    _held.items = held
    try:
        yield
    finally:
        _held.items = None
        for sender, ctxt, items in held:
            sender._publish_held(ctxt, items)


class BrokerNotifier:
    """Publishes ``messagingv2`` notifications on a transport, raising on failure.

    :param transport: the notification transport.
    :param publisher_id: e.g. ``custos-agent.<host>``.
    :param topics: topics to publish on; ``<topic>.<priority>`` is the target.
    :param serializer: turns the context and payload into wire form.
    :param retry: reconnection attempts the driver makes per publish.
    """

    def __init__(self, transport: messaging.Transport, publisher_id: str,
                 topics: list[str], serializer: messaging.Serializer,
                 retry: int = SEND_RETRY) -> None:
        self.transport = transport
        self.publisher_id = publisher_id
        self.topics = list(topics)
        self.serializer = serializer
        self.retry = retry

    def notify(self, ctxt: Any, event_type: str, payload: dict[str, Any],
               priority: str) -> None:
        """Publish one notification on every topic.

        :raises Exception: whatever the transport raises when the broker
            does not take it (oslo.messaging's ``MessageDeliveryFailure``,
            kombu's connection errors).
        """
        message = {"message_id": str(uuid.uuid4()),
                   "publisher_id": self.publisher_id,
                   "event_type": event_type,
                   "priority": priority.upper(),
                   "payload": self.serializer.serialize_entity(ctxt, payload),
                   # The naive UTC form oslo.messaging's own notifier sends.
                   "timestamp": str(datetime.datetime.now(datetime.timezone.utc)
                                    .replace(tzinfo=None))}
        wire_ctxt = self.serializer.serialize_context(ctxt)
        for topic in self.topics:
            target = messaging.Target(topic=f"{topic}.{priority.lower()}")
            # oslo.messaging's own notification drivers publish through this
            # method; going through it directly keeps the failure visible.
            self.transport._send_notification(target, wire_ctxt, message,
                                              version=2.0, retry=self.retry)

    def info(self, ctxt: Any, event_type: str, payload: dict[str, Any]) -> None:
        self.notify(ctxt, event_type, payload, "info")

    def warn(self, ctxt: Any, event_type: str, payload: dict[str, Any]) -> None:
        self.notify(ctxt, event_type, payload, "warn")

    def error(self, ctxt: Any, event_type: str, payload: dict[str, Any]) -> None:
        self.notify(ctxt, event_type, payload, "error")


class NotificationSender:
    """A bounded queue of notifications drained by one thread.

    :param notifier: returns the notifier to publish with at send time
        (an object with ``info``/``warn``/``error(ctxt, event_type,
        payload)``), or None to discard.
    :param max_queued: notifications held before new ones are dropped.
    :param retry_deadline: seconds one notification is retried.
    """

    def __init__(self, notifier: Callable[[], Any], *, max_queued: int = MAX_QUEUED,
                 retry_deadline: float = RETRY_DEADLINE, first_pause: float = FIRST_PAUSE,
                 max_pause: float = MAX_PAUSE) -> None:
        self._notifier = notifier
        self.max_queued = max_queued
        self.retry_deadline = retry_deadline
        self.first_pause = first_pause
        self.max_pause = max_pause
        self._queue: collections.deque[tuple[Any, Notification]] = collections.deque()
        self._cond = threading.Condition()
        self._busy = False
        # Notifications held for a worker to publish after its reply.
        self._held = 0
        self._closing = False
        self._thread: threading.Thread | None = None
        #: Notifications dropped because the queue was full, since start.
        self.dropped = 0
        #: Notifications given up after ``retry_deadline``, since start.
        self.failed = 0
        self._burst = 0
        #: What the last send found of the broker: ok, failing, unknown.
        self.broker_state = "unknown"

    def state(self) -> dict[str, int]:
        """Return ``{queued, dropped, failed}`` for ``custos health``."""
        return {"queued": self.pending(), "dropped": self.dropped, "failed": self.failed}

    def submit(self, ctxt: Any, notifications: Iterable[Notification]) -> None:
        """Queue a committed request's notifications; returns at once.

        Never raises: a notification that does not fit is counted and
        dropped, since the change itself is already committed.
        """
        items = list(notifications)
        if not items:
            return
        held = getattr(_held, "items", None)
        with self._cond:
            if self._closing:
                self._drop_locked(len(items))
                metrics.NOTIFICATIONS_SHUTDOWN.inc(len(items))
                return
            if (held is not None and not self._queue and not self._busy
                    and not self._held and self.broker_state != "failing"):
                self._held = len(items)
                held.append((self, ctxt, items))
                return
            for item in items:
                if len(self._queue) >= self.max_queued:
                    self._drop_locked(1)
                    metrics.NOTIFICATIONS_QUEUE_FULL.inc()
                else:
                    self._queue.append((ctxt, item))
            self._start_locked()
            self._cond.notify_all()

    def _start_locked(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="custos-notifier",
                                            daemon=True)
            self._thread.start()

    def _publish_held(self, ctxt: Any, items: list[Notification]) -> None:
        """Publish what :meth:`submit` held for this thread; on a failure, queue the rest."""
        for index, item in enumerate(items):
            try:
                self._publish_once(ctxt, item)
            except Exception as error:  # noqa: BLE001 - the queue retries it
                LOG.warning("Notification %s not sent (%s); retrying", item[0],
                            type(error).__name__)
                metrics.NOTIFICATIONS_RETRIED.inc()
                with self._cond:
                    self.broker_state = "failing"
                    self._queue.extendleft((ctxt, left) for left in reversed(items[index:]))
                    self._held = 0
                    self._start_locked()
                    self._cond.notify_all()
                return
        with self._cond:
            self._held = 0
            self._cond.notify_all()

    def _publish_once(self, ctxt: Any, item: Notification) -> None:
        """Publish one notification; raises what the notifier raises."""
        notifier = self._notifier()
        if notifier is None:
            return
        event_type, payload, priority = item
        getattr(notifier, priority)(ctxt, event_type, payload)
        metrics.NOTIFICATIONS_SENT.inc()
        self.broker_state = "ok"

    def _drop_locked(self, count: int) -> None:
        self.dropped += count
        if self._burst == 0:
            LOG.warning("Notification queue full (%d waiting); dropping notifications "
                        "until the broker catches up", len(self._queue))
        self._burst += count

    def pending(self) -> int:
        """Notifications queued or being sent."""
        with self._cond:
            return len(self._queue) + (1 if self._busy else 0) + self._held

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued notification was sent or given up.

        :returns: True when the queue emptied within ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy or self._held:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self, timeout: float | None = None) -> bool:
        """Send what is queued (for at most ``timeout`` seconds), then stop.

        Notifications submitted afterwards are dropped and counted.

        :returns: True when everything queued was handled in time.
        """
        flushed = self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            left = len(self._queue) + (1 if self._busy else 0)
            self.failed += len(self._queue)
            metrics.NOTIFICATIONS_SHUTDOWN.inc(len(self._queue))
            self._queue.clear()
        if not flushed:
            LOG.warning("%d notifications were not sent before shutdown", left)
        return flushed

    def _run(self) -> None:
        while True:
            with self._cond:
                # What is queued was committed after what a worker holds.
                while (not self._queue or self._held) and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                ctxt, item = self._queue.popleft()
                self._busy = True
                if self._burst and not self._queue:
                    LOG.warning("Dropped %d notifications while the queue was full",
                                self._burst)
                    self._burst = 0
            try:
                self._send(ctxt, item)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _send(self, ctxt: Any, item: Notification) -> None:
        event_type = item[0]
        deadline = time.monotonic() + self.retry_deadline
        pause = self.first_pause
        attempt = 0
        while True:
            attempt += 1
            try:
                self._publish_once(ctxt, item)
                if attempt > 1:
                    LOG.info("Notification %s sent after %d attempts", event_type, attempt)
                return
            except Exception as error:  # noqa: BLE001 - retried, then counted
                self.broker_state = "failing"
                if time.monotonic() + pause > deadline or self._closing_now():
                    self.failed += 1
                    metrics.NOTIFICATIONS_GAVE_UP.inc()
                    LOG.error("Could not send notification %s after %d attempts: %s",
                              event_type, attempt, type(error).__name__)
                    return
                LOG.warning("Notification %s not sent (%s); retrying", event_type,
                            type(error).__name__)
                metrics.NOTIFICATIONS_RETRIED.inc()
                time.sleep(pause)
                pause = min(pause * 2, self.max_pause)

    def _closing_now(self) -> bool:
        with self._cond:
            return self._closing
