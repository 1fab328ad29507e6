"""The request context: who is asking, with which user and service roles.

A context travels as the first argument of every RPC message, serialized
with oslo.context's ``to_dict()`` plus the service-token fields
(``service_roles``, ``service_user_id``, ``service_project_id``) that
composite rules need. Tokens are part of oslo.context's dictionary, so the
context is never logged whole: :func:`redacted` is the form for logs.

The context class and its serializer live in :mod:`agent.wire`, which the
client shares; this module adds what only the agent needs.
"""

from __future__ import annotations

from typing import Any

from oslo_context import context as oslo_context

from agent.wire import RequestContext, RequestContextSerializer

__all__ = ["SENSITIVE_KEYS", "RequestContext", "RequestContextSerializer",
           "get_admin_context", "redacted"]

# Keys of a context dictionary that hold credentials.
SENSITIVE_KEYS = frozenset({"auth_token", "service_token", "auth_token_info",
                            "auth_plugin"})


def get_admin_context() -> RequestContext:
    """Return a context for the agent's own work (listeners, start-up)."""
    return RequestContext(roles=["admin"], is_admin=True,
                          overwrite=False)


def redacted(ctx: oslo_context.RequestContext | dict[str, Any] | None) -> dict[str, Any]:
    """Return the context as a dict with every credential masked."""
    if ctx is None:
        return {}
    values = ctx.to_dict() if hasattr(ctx, "to_dict") else dict(ctx)
    for key in SENSITIVE_KEYS & values.keys():
        if values[key]:
            values[key] = "***"
    return values
