"""A bounded memory of validated and refused tokens.

Entries are keyed by the SHA-256 digest of a token, so the token itself is
never kept, and found in constant time whatever the number of entries.
The least recently used entry goes first when the bound is reached; an
entry also goes once its time is up.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


def digest(token: str) -> bytes:
    """Return the key a token is remembered under."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class TokenCache(Generic[V]):
    """Remembers one value per token digest for a limited time.

    :param max_entries: most entries held at once (at least 1).
    :param clock: seconds, monotonic; replaced in tests.
    """

    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> V | None:
        """Return the value kept for ``key``, or None when absent or expired."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= self._clock():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def holds(self, key: bytes) -> bool:
        """True when a value is kept for ``key`` and its time is not up.

        Unlike :meth:`get`, it changes nothing: the entry keeps its place.
        """
        with self._lock:
            entry = self._entries.get(key)
            return entry is not None and entry[0] > self._clock()

    def put(self, key: bytes, value: V, ttl: float) -> None:
        """Keep ``value`` for ``ttl`` seconds (nothing is kept for ttl <= 0)."""
        if ttl <= 0:
            return
        with self._lock:
            self._entries[key] = (self._clock() + ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()
