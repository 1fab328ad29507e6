"""Notification listener endpoints: events the agent acts on (SPEC §3.6)."""

from __future__ import annotations

from typing import Any


def build(runtime: Any) -> list[Any]:
    """Return the listener endpoints; none yet."""
    return []
