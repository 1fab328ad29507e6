"""``custos`` sub-commands for backups."""

from __future__ import annotations

from typing import Any


def register(subparsers: Any) -> None:
    """Add the backups sub-commands; none yet."""
