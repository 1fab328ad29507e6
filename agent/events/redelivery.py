"""How often an event has been delivered: the broker's count or our own.

A quorum queue counts for us: RabbitMQ puts an ``x-delivery-count`` header
on every redelivery, the same count whichever agent of the pool takes the
message, and ``x-delivery-limit`` (oslo.messaging's
``[oslo_messaging_rabbit] rabbit_quorum_delivery_limit``) lets the broker
drop it at the limit by itself.  A classic queue only sets the
``redelivered`` flag, so each agent also keeps a bounded count of the
messages it has requeued, keyed by the message's id; the larger of the two
counts is the delivery's number.

On a classic queue shared by several agents each counts its own
deliveries, so one message is taken at most ``agents x (max + 1)`` times
before every agent has dropped it; still bounded, never a hot loop.
"""

from __future__ import annotations

import collections
import hashlib
import json
import threading
from collections.abc import Mapping
from typing import Any

#: How many requeued messages an agent remembers; the oldest is forgotten
#: first, which at worst lets that message be taken a few times more.
DEFAULT_CAPACITY = 10000


def message_key(incoming: Any) -> str:
    """Return an id of ``incoming`` that stays the same across redeliveries.

    The notifier's ``message_id`` when the envelope has one, else the
    driver's unique id, else a digest of the message itself.
    """
    message = getattr(incoming, "message", None)
    if isinstance(message, Mapping):
        message_id = message.get("message_id")
        if isinstance(message_id, str) and 0 < len(message_id) <= 255:
            return "id:" + message_id
    unique_id = getattr(incoming, "unique_id", None)
    if isinstance(unique_id, str) and unique_id:
        return "unique:" + unique_id
    try:
        body = json.dumps(message, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        body = repr(message)
    return "digest:" + hashlib.sha256(body.encode("utf-8", "replace")).hexdigest()


def broker_count(incoming: Any) -> int:
    """Return the delivery's number as the broker tells it (1 when it says nothing).

    The rabbit driver keeps kombu's message on the one oslo.messaging hands
    us (``_raw_message``); no public attribute carries the headers.
    """
    raw = getattr(getattr(incoming, "message", None), "_raw_message", None)
    headers = getattr(raw, "headers", None)
    if isinstance(headers, Mapping):
        count = headers.get("x-delivery-count")
        if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
            return count + 1
    info = getattr(raw, "delivery_info", None)
    if isinstance(info, Mapping) and info.get("redelivered"):
        return 2
    return 1


class DeliveryCounter:
    """Counts the deliveries of messages this agent has requeued.

    :param capacity: how many messages it remembers at most.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._capacity = capacity
        self._counts: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._lock = threading.Lock()

    def delivered(self, incoming: Any) -> int:
        """Record a delivery of ``incoming`` and return its number (1 = first)."""
        key = message_key(incoming)
        with self._lock:
            number = max(self._counts.pop(key, 0) + 1, broker_count(incoming))
            self._counts[key] = number
            while len(self._counts) > self._capacity:
                self._counts.popitem(last=False)
        return number

    def forget(self, incoming: Any) -> None:
        """Forget ``incoming``: it was handled or dropped and will not be back."""
        with self._lock:
            self._counts.pop(message_key(incoming), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._counts)
