"""Short-lived, per-agent cache of vendordata answers.

Each agent keeps its own cache in memory.  It is not shared through the
database on purpose: a cached ``vendordata_get`` must cost about as much
as a no-op RPC call, so the hot path cannot afford a database round trip.
Sharing buys little anyway: entries live for seconds to minutes
(``[vendordata] cache_ttl`` or the target's ``Cache-Control: max-age``),
so an agent that misses simply asks the target again.  Because nothing is
shared, every agent purges its own entries when it sees
``instance.delete.end``; :meth:`purge_instance` costs the number of
entries of that instance, not the size of the cache.

An answer is keyed by the target and by everything the target saw
(:func:`request_key` of the request body: project, instance, image,
hostname, user data, metadata and boot roles), so a lookup that differs
in any of them is never served another caller's answer.  The instance's
boot roles, which never change once stored, are kept beside the answers
(:meth:`VendordataCache.get_roles`) so that a lookup whose answers are
all cached still needs no database; an instance without stored roles is
kept as such for the default TTL, as an answer would be.

The cache is bounded in bytes: past ``max_bytes`` (and ``max_entries``)
the entry stored longest ago is dropped first, and an answer larger than
the whole bound is not stored.  Answers (any JSON value, as the target
sent it) are stored as JSON text and decoded on every hit, so a caller
can never change what the next caller gets, and each hit returns a
fresh, JSON-safe value.  A miss is :data:`MISSING`, since ``None`` is a
good answer (a target may answer ``null``).

Failures are never cached; callers only :meth:`~VendordataCache.put` good
answers.

Each store also drops the expired entries stored longest ago, so that the
cache holds about a TTL's worth of answers, not every answer until the
bound.
"""

from __future__ import annotations

import collections
import hashlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

_Key = tuple[str, str, str]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


#: What :meth:`VendordataCache.get` returns when it holds no answer.
MISSING: Any = _Missing()

# Stands for the boot roles among an instance's entries; no target is
# named with a NUL.
_ROLES = "\0boot-roles"
# What an entry costs beyond its text and key: the tuple, the dict slot
# and the instance index, roughly.
_ENTRY_OVERHEAD = 200


def request_key(body: dict[str, Any]) -> str:
    """Return a digest of a request body, the part of a cache key it decides.

    :param body: the body POSTed to the targets (JSON-safe).
    """
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class VendordataCache:
    """Thread-safe TTL cache of vendordata answers for one agent.

    :param default_ttl: seconds an answer lives when its target gave no
        cache hint; 0 disables caching of such answers.
    :param max_entries: the most entries held at once; the oldest stored
        entry is evicted to make room.
    :param max_bytes: the most bytes held at once (answers, keys and a
        fixed cost per entry); the oldest stored entries are evicted to
        make room.
    :param clock: monotonic clock in seconds; injectable for tests.
    :raises ValueError: when ``default_ttl`` or ``max_bytes`` is negative
        or ``max_entries`` is below 1.
    """

    def __init__(self, default_ttl: float, max_entries: int = 100_000,
                 max_bytes: int = 64 * 1024 * 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if default_ttl < 0:
            raise ValueError("default_ttl must not be negative")
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        self._default_ttl = float(default_ttl)
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0
        self._clock = clock
        self._lock = threading.Lock()
        # Insertion order is eviction order: the first entry is the oldest.
        self._entries: collections.OrderedDict[_Key, tuple[float, str]] = (
            collections.OrderedDict())
        self._by_instance: dict[str, set[tuple[str, str]]] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @property
    def size_bytes(self) -> int:
        """Bytes held now, as counted against ``max_bytes``."""
        with self._lock:
            return self._bytes

    def get(self, target: str, instance: str, request: str = "") -> Any:
        """Return the cached answer of ``target`` for ``instance``.

        :param target: the target's name.
        :param instance: the instance UUID.
        :param request: the :func:`request_key` of the request it answered.
        :returns: a new value equal to the stored answer, or
            :data:`MISSING` when nothing is stored or the entry has expired.
        """
        key = (target, instance, request)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return MISSING
            expires_at, text = entry
            if self._clock() >= expires_at:
                self._remove(key)
                return MISSING
        return json.loads(text)

    def put(self, target: str, instance: str, data: Any,
            ttl: float | None, request: str = "") -> None:
        """Store the answer of ``target`` for ``instance``.

        A later put for the same key replaces the entry and makes it the
        newest.

        :param target: the target's name.
        :param instance: the instance UUID.
        :param request: the :func:`request_key` of the request it answers.
        :param data: the answer, any JSON value; later changes to it by the
            caller do not reach the cache.
        :param ttl: seconds to keep it; ``None`` for the default TTL; 0
            stores nothing and drops any entry already held for the key.
        :raises ValueError: when ``ttl`` is negative.
        :raises TypeError: when ``data`` is not JSON-safe.
        """
        if ttl is None:
            ttl = self._default_ttl
        if ttl < 0:
            raise ValueError("ttl must not be negative")
        key = (target, instance, request)
        if ttl == 0:
            # The target asked not to store this answer; an older answer
            # must not be served in its place either.
            with self._lock:
                self._remove(key)
            return
        self._store(key, json.dumps(data, separators=(",", ":")), ttl)

    def get_roles(self, instance: str) -> list[str] | None:
        """Return the boot roles kept for ``instance``, or None."""
        data = self.get(_ROLES, instance)
        return None if data is MISSING else list(data["roles"])

    def put_roles(self, instance: str, roles: list[str]) -> None:
        """Keep the boot roles stored for ``instance`` (``[]``: none stored)."""
        if self._default_ttl > 0:
            self.put(_ROLES, instance, {"roles": list(roles)}, None)

    def _store(self, key: _Key, text: str, ttl: float) -> None:
        cost = _cost(key, text)
        with self._lock:
            self._remove(key)
            self._drop_expired_oldest()
            if cost > self._max_bytes:
                return
            self._entries[key] = (self._clock() + ttl, text)
            self._bytes += cost
            self._by_instance.setdefault(key[1], set()).add((key[0], key[2]))
            while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
                self._remove(next(iter(self._entries)))

    def _drop_expired_oldest(self) -> None:
        # An expired entry is otherwise dropped only when its own key is
        # asked for again, and most instances are not: their answers stayed
        # until the byte bound pushed them out, hours later, and an agent's
        # memory grew all that while. Entries are stored in about the order
        # they expire, so the expired ones are found at the head (behind an
        # entry of a longer TTL they wait for it).
        now = self._clock()
        while self._entries:
            oldest = next(iter(self._entries))
            if self._entries[oldest][0] > now:
                return
            self._remove(oldest)

    def purge_instance(self, instance_uuid: str) -> int:
        """Drop every entry of one instance.

        :param instance_uuid: the deleted instance.
        :returns: how many entries were dropped.
        """
        with self._lock:
            keys = self._by_instance.pop(instance_uuid, None)
            if not keys:
                return 0
            for target, request in keys:
                key = (target, instance_uuid, request)
                self._bytes -= _cost(key, self._entries.pop(key)[1])
            return sum(1 for target, _ in keys if target != _ROLES)

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._entries.clear()
            self._by_instance.clear()
            self._bytes = 0

    def _remove(self, key: _Key) -> None:
        # Caller holds the lock.
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        self._bytes -= _cost(key, entry[1])
        target, instance, request = key
        keys = self._by_instance.get(instance)
        if keys is not None:
            keys.discard((target, request))
            if not keys:
                del self._by_instance[instance]


def _cost(key: _Key, text: str) -> int:
    return len(text) + sum(len(part) for part in key) + _ENTRY_OVERHEAD
