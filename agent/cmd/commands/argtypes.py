"""Argument types shared by the ``custos`` sub-commands (argparse ``type=``)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def json_object(text: str) -> dict[str, Any]:
    """Parse a JSON object given on the command line."""
    try:
        value = json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not JSON: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def key_value(text: str) -> tuple[str, str]:
    """Parse ``KEY=VALUE``; the value may be empty and may hold ``=``."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError("expected KEY=VALUE")
    return key, value


def comma_list(text: str) -> list[str]:
    """Parse ``a,b,c`` into its non-empty, stripped items."""
    return [item.strip() for item in text.split(",") if item.strip()]
