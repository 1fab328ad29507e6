"""Requests that came without a token, while the agent still trusts contexts.

Before an operator switches ``[auth] strategy`` from ``trusted`` to
``keystone``, every caller must send its tokens. The agent counts the
requests that arrived without one, per claimed user and method, and keeps
the counts in ``$state_path/tokenless_requests.json`` for
``custos-status upgrade check`` to list. The counts are bounded in
entries; what does not fit is added to one overflow entry.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

LOG = logging.getLogger(__name__)

FILE_NAME = "tokenless_requests.json"
#: Most (user, method) pairs counted one by one.
MAX_ENTRIES = 1000
#: Seconds between two writes of the file.
WRITE_EVERY = 10.0
#: Stands for every caller past :data:`MAX_ENTRIES`.
OTHERS = ("(others)", "(any)")


def path(state_path: str) -> Path:
    """Return where an agent with ``state_path`` keeps its counts."""
    return Path(state_path) / FILE_NAME


class TokenlessCounter:
    """Counts tokenless requests and writes the counts now and then.

    :param file: where the counts go; None keeps them in memory only.
    """

    def __init__(self, file: Path | None) -> None:
        self.file = file
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}
        self._dirty = False
        self._next_write = 0.0

    def count(self, user_id: str | None, method: str) -> None:
        """Count one request of ``method`` by ``user_id`` that carried no token."""
        key = (user_id or "(none)", method)
        with self._lock:
            if key not in self._counts and len(self._counts) >= MAX_ENTRIES:
                key = OTHERS
            self._counts[key] = self._counts.get(key, 0) + 1
            self._dirty = True
            due = time.monotonic() >= self._next_write
        if due:
            self.flush()

    def snapshot(self) -> list[dict[str, Any]]:
        """Return the counts, largest first."""
        with self._lock:
            items = sorted(self._counts.items(), key=lambda item: -item[1])
        return [{"user_id": user, "method": method, "requests": n}
                for (user, method), n in items]

    def flush(self) -> None:
        """Write the counts to the file now, if they changed (errors are logged)."""
        with self._lock:
            if not self._dirty or self.file is None:
                return
            self._dirty = False
            self._next_write = time.monotonic() + WRITE_EVERY
        entries = self.snapshot()
        try:
            # A name of this writer's own: two agents may share a state path.
            fd, temporary = tempfile.mkstemp(prefix=self.file.name, suffix=".tmp",
                                             dir=self.file.parent)
            with os.fdopen(fd, "w") as stream:
                json.dump({"tokenless": entries}, stream)
            os.replace(temporary, self.file)
        except OSError as error:
            LOG.warning("Could not write %s: %s", self.file, type(error).__name__)


def read(file: Path) -> list[dict[str, Any]]:
    """Return the counts an agent wrote, or an empty list when there are none.

    :raises ValueError: the file is not what an agent writes.
    """
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError:
        return []
    entries = data.get("tokenless") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"{file} does not hold tokenless request counts")
    return entries
