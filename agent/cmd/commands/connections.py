"""``custos`` sub-commands for connections."""

from __future__ import annotations

from typing import Any


def register(subparsers: Any) -> None:
    """Add the connections sub-commands; none yet."""
