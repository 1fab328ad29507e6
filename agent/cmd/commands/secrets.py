"""``custos`` sub-commands for secrets."""

from __future__ import annotations

from typing import Any


def register(subparsers: Any) -> None:
    """Add the secrets sub-commands; none yet."""
