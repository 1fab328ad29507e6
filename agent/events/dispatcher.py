"""Handing notifications to the listener's endpoints, one bad message at a time.

oslo.messaging's own notification dispatcher reads the envelope before any
endpoint sees it, and a message it cannot read (``"priority": null``
raises there) counts as a failure: with requeueing allowed the broker
hands it straight back, forever.  custos' listeners use
:class:`EventDispatcher` instead, which decides each message's fate once:

* a message that can never be handled (an envelope that is not a mapping,
  a priority that is not one of oslo.messaging's, an event type that is
  not a string) is logged once and dropped;
* the others go to the endpoints whose priority method and filter match,
  as with oslo.messaging, with the exchange the broker says the message
  was published to in their metadata (``exchange``), which oslo.messaging
  does not pass on;
* an endpoint answers ``HANDLED`` (also for a payload naming no resource,
  which it logs) or ``REQUEUE`` for a transient failure (database
  unreachable, deadlock); an exception out of an endpoint is a bug, logged
  with its traceback and dropped, since requeueing would only repeat it;
* a message taken more than ``[events] max_redeliveries`` times after its
  first delivery is dropped with one ERROR (see
  :mod:`agent.events.redelivery` for the counting).

Dropping means acknowledging: the broker forgets the message.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import oslo_messaging as messaging
from oslo_messaging import dispatcher as base_dispatcher
from oslo_messaging.notify import dispatcher as notify_dispatcher

from agent.events.redelivery import DeliveryCounter

LOG = logging.getLogger(__name__)

HANDLED = messaging.NotificationResult.HANDLED
REQUEUE = messaging.NotificationResult.REQUEUE
PRIORITIES: tuple[str, ...] = tuple(notify_dispatcher.PRIORITIES)


def shown(value: Any) -> str:
    """A short, printable rendering of an envelope field for a log line.

    Control characters become ``?``: a publisher must not put lines of its
    own into the agent's log.
    """
    if isinstance(value, str):
        return "".join(char if char.isprintable() else "?" for char in value[:80])
    return type(value).__name__


def source_exchange(incoming: Any) -> str | None:
    """Return the exchange ``incoming`` was published to, as the broker tells it.

    The rabbit driver keeps kombu's message on the one oslo.messaging hands
    us (``_raw_message``, whose ``delivery_info`` names the exchange); a
    transport that does not say gives None, and no event counts from it.
    """
    raw = getattr(getattr(incoming, "message", None), "_raw_message", None)
    info = getattr(raw, "delivery_info", None)
    if isinstance(info, Mapping):
        exchange = info.get("exchange")
        if isinstance(exchange, str):
            return exchange
    return None


class EventDispatcher(base_dispatcher.DispatcherBase):
    """Dispatches notifications to endpoints and bounds their redelivery.

    :param endpoints: objects with a method per priority they handle
        (``info``) and an optional ``filter_rule``.
    :param max_redeliveries: how often a requeued message may come back.
    :param counter: where deliveries are counted; a new one by default.
    :param quiet: drop unreadable messages without a word; for a pool
        that sees the same messages as another which reports them.
    """

    def __init__(self, endpoints: list[Any], max_redeliveries: int,
                 counter: DeliveryCounter | None = None, quiet: bool = False) -> None:
        self.endpoints = endpoints
        self.max_redeliveries = max_redeliveries
        self.quiet = quiet
        self.counter = counter if counter is not None else DeliveryCounter()
        self._callbacks: dict[str, list[tuple[Any, Any]]] = {}
        for endpoint in endpoints:
            for priority in PRIORITIES:
                method = getattr(endpoint, priority, None)
                if method is not None:
                    self._callbacks.setdefault(priority, []).append(
                        (getattr(endpoint, "filter_rule", None), method))

    @property
    def supported_priorities(self) -> list[str]:
        """The priorities some endpoint handles; the listener binds these."""
        return list(self._callbacks)

    def dispatch(self, incoming: Any) -> str:
        """Handle one message; return ``HANDLED`` (acknowledge) or ``REQUEUE``."""
        message = incoming.message
        problem = self._unreadable(message)
        if problem is not None:
            if not self.quiet:
                LOG.warning("Dropped a notification that can never be handled: %s "
                            "(event type %s, publisher %s)", problem,
                            *self._names(message))
            return HANDLED
        event_type = message["event_type"]
        number = self.counter.delivered(incoming)
        if number > self.max_redeliveries + 1:
            self._give_up(incoming, number - 1)
            return HANDLED
        result = self._run(message, incoming.ctxt, source_exchange(incoming))
        if result == REQUEUE and number > self.max_redeliveries:
            self._give_up(incoming, number)
            return HANDLED
        if result != REQUEUE:
            self.counter.forget(incoming)
        else:
            LOG.warning("Requeued %s (delivery %d of at most %d)", shown(event_type),
                        number, self.max_redeliveries + 1)
        return result

    @staticmethod
    def _names(message: Any) -> tuple[str, str]:
        """The event type and publisher of a message, printable, as far as it has them."""
        if not isinstance(message, Mapping):
            return shown(None), shown(None)
        return shown(message.get("event_type")), shown(message.get("publisher_id"))

    @staticmethod
    def _unreadable(message: Any) -> str | None:
        """Say why ``message`` can never be handled, or None when it can."""
        if not isinstance(message, Mapping):
            return "the envelope is not a mapping"
        priority = message.get("priority")
        if not isinstance(priority, str) or priority.lower() not in PRIORITIES:
            return f"unknown priority {shown(priority)!r}"
        event_type = message.get("event_type")
        if not isinstance(event_type, str) or not event_type:
            return "no event type"
        return None

    def _give_up(self, incoming: Any, failed: int) -> None:
        self.counter.forget(incoming)
        message = incoming.message
        LOG.error("Dropped %s from %s after %d failed deliveries (message %s); "
                  "what it should have purged stays", shown(message["event_type"]),
                  shown(message.get("publisher_id")), failed,
                  shown(message.get("message_id")))

    def _run(self, message: Mapping[str, Any], ctxt: Any, exchange: str | None) -> str:
        """Call every matching endpoint; stop at the first that asks for a requeue.

        :param exchange: where the message was published (None when the
            transport does not say); endpoints find it in the metadata.
        """
        priority = message["priority"].lower()
        publisher_id = message.get("publisher_id")
        event_type = message["event_type"]
        payload = message.get("payload")
        metadata = {"message_id": message.get("message_id"),
                    "timestamp": message.get("timestamp"), "exchange": exchange}
        for screen, callback in self._callbacks.get(priority, []):
            if screen is not None and not screen.match(ctxt, publisher_id, event_type,
                                                       metadata, payload):
                continue
            try:
                result = callback(ctxt, publisher_id, event_type, payload, metadata)
            except Exception:  # noqa: BLE001 - a bug; requeueing would repeat it
                LOG.exception("Dropped %s from %s: its handler failed",
                              shown(event_type), shown(publisher_id))
                return HANDLED
            if result == REQUEUE:
                return REQUEUE
        return HANDLED

