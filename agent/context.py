"""The request context: who is asking, with which user and service roles.

A context travels as the first argument of every RPC message, serialized
with oslo.context's ``to_dict()`` plus the service-token fields
(``service_roles``, ``service_user_id``, ``service_project_id``) that
composite rules need. Tokens are part of oslo.context's dictionary, so the
context is never logged whole: :func:`redacted` is the form for logs.
"""

from __future__ import annotations

from typing import Any

import oslo_messaging as messaging
from oslo_context import context as oslo_context

# Keys of a context dictionary that hold credentials.
SENSITIVE_KEYS = frozenset({"auth_token", "service_token", "auth_token_info",
                            "auth_plugin"})


class RequestContext(oslo_context.RequestContext):
    """oslo.context's context with the service-token identity on the wire."""

    FROM_DICT_EXTRA_KEYS = ["service_roles", "service_user_id",
                            "service_project_id"]

    def to_dict(self) -> dict[str, Any]:
        """Return the wire form: ``to_dict()`` plus the service fields."""
        values = super().to_dict()
        values.update(service_roles=list(self.service_roles or []),
                      service_user_id=self.service_user_id,
                      service_project_id=self.service_project_id)
        return values


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


class RequestContextSerializer(messaging.Serializer):
    """Turns :class:`RequestContext` into a dict on the wire and back.

    Entities (arguments and results) are JSON-safe already and pass
    through unchanged.
    """

    def serialize_entity(self, ctxt: Any, entity: Any) -> Any:
        return entity

    def deserialize_entity(self, ctxt: Any, entity: Any) -> Any:
        return entity

    def serialize_context(self, ctxt: Any) -> dict[str, Any]:
        if isinstance(ctxt, dict):
            return ctxt
        values = ctxt.to_dict()
        # A caller may hand a plain oslo.context context, whose to_dict()
        # leaves the service-token identity out.
        for key in RequestContext.FROM_DICT_EXTRA_KEYS:
            values.setdefault(key, getattr(ctxt, key, None))
        return values

    def deserialize_context(self, ctxt: dict[str, Any]) -> RequestContext:
        return RequestContext.from_dict(ctxt or {})
