"""``custos health``."""

from __future__ import annotations

from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``health`` sub-command."""
    parser = subparsers.add_parser("health", help="ask an agent how it is")
    parser.set_defaults(method="health",
                        handler=lambda api, ctxt, args: api.health(ctxt, server=args.server))
