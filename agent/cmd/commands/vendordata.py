"""``custos`` sub-commands for vendordata."""

from __future__ import annotations

from typing import Any


def register(subparsers: Any) -> None:
    """Add the vendordata sub-commands; none yet."""
