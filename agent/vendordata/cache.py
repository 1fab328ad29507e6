"""Short-lived, per-agent cache of vendordata answers.

Each agent keeps its own cache in memory, keyed by (target name, instance
UUID).  It is not shared through the database on purpose: a cached
``vendordata_get`` must cost about as much as a no-op RPC call, so the hot
path cannot afford a database round trip.  Sharing buys little anyway:
entries live for seconds to minutes (``[vendordata] cache_ttl`` or the
target's ``Cache-Control: max-age``), so an agent that misses simply asks
the target again.  Because nothing is shared, every agent purges its own
entries when it sees ``instance.delete.end``; :meth:`purge_instance` costs
the number of entries of that instance, not the size of the cache.

The cache is bounded: past ``max_entries`` the entry stored longest ago is
dropped first.  Answers are stored as JSON text and decoded on every hit,
so a caller can never change what the next caller gets, and each hit
returns a fresh, JSON-safe ``dict``.

Failures are never cached; callers only :meth:`~VendordataCache.put` good
answers.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from collections.abc import Callable
from typing import Any

_Key = tuple[str, str]


class VendordataCache:
    """Thread-safe TTL cache of vendordata answers for one agent.

    :param default_ttl: seconds an answer lives when its target gave no
        cache hint; 0 disables caching of such answers.
    :param max_entries: the most entries held at once; the oldest stored
        entry is evicted to make room.
    :param clock: monotonic clock in seconds; injectable for tests.
    :raises ValueError: when ``default_ttl`` is negative or ``max_entries``
        is below 1.
    """

    def __init__(self, default_ttl: float, max_entries: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if default_ttl < 0:
            raise ValueError("default_ttl must not be negative")
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._default_ttl = float(default_ttl)
        self._max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        # Insertion order is eviction order: the first entry is the oldest.
        self._entries: collections.OrderedDict[_Key, tuple[float, str]] = (
            collections.OrderedDict())
        self._by_instance: dict[str, set[str]] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def get(self, target: str, instance: str) -> dict[str, Any] | None:
        """Return the cached answer of ``target`` for ``instance``.

        :param target: the target's name.
        :param instance: the instance UUID.
        :returns: a new ``dict`` equal to the stored answer, or ``None``
            when nothing is stored or the entry has expired.
        """
        key = (target, instance)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            expires_at, text = entry
            if self._clock() >= expires_at:
                self._remove(key)
                return None
        data: dict[str, Any] = json.loads(text)
        return data

    def put(self, target: str, instance: str, data: dict[str, Any],
            ttl: float | None) -> None:
        """Store the answer of ``target`` for ``instance``.

        A later put for the same key replaces the entry and makes it the
        newest.

        :param target: the target's name.
        :param instance: the instance UUID.
        :param data: the answer, a JSON object; later changes to it by the
            caller do not reach the cache.
        :param ttl: seconds to keep it; ``None`` for the default TTL; 0
            stores nothing and drops any entry already held for the key.
        :raises ValueError: when ``ttl`` is negative.
        :raises TypeError: when ``data`` is not a dict or not JSON-safe.
        """
        if ttl is None:
            ttl = self._default_ttl
        if ttl < 0:
            raise ValueError("ttl must not be negative")
        if not isinstance(data, dict):
            raise TypeError("vendordata answers are JSON objects")
        key = (target, instance)
        if ttl == 0:
            # The target asked not to store this answer; an older answer
            # must not be served in its place either.
            with self._lock:
                self._remove(key)
            return
        text = json.dumps(data, separators=(",", ":"))
        with self._lock:
            expires_at = self._clock() + ttl
            if key in self._entries:
                self._entries.move_to_end(key)
            self._entries[key] = (expires_at, text)
            self._by_instance.setdefault(instance, set()).add(target)
            while len(self._entries) > self._max_entries:
                oldest = next(iter(self._entries))
                self._remove(oldest)

    def purge_instance(self, instance_uuid: str) -> int:
        """Drop every entry of one instance.

        :param instance_uuid: the deleted instance.
        :returns: how many entries were dropped.
        """
        with self._lock:
            targets = self._by_instance.pop(instance_uuid, None)
            if not targets:
                return 0
            for target in targets:
                del self._entries[(target, instance_uuid)]
            return len(targets)

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._entries.clear()
            self._by_instance.clear()

    def _remove(self, key: _Key) -> None:
        # Caller holds the lock.
        if self._entries.pop(key, None) is None:
            return
        target, instance = key
        targets = self._by_instance.get(instance)
        if targets is not None:
            targets.discard(target)
            if not targets:
                del self._by_instance[instance]
