"""What the custos client and the agent agree on, and nothing more.

Both sides of the bus import this module: :mod:`rpcapi` and the
``custos`` CLI to address and fill their messages, the agent to listen
where clients send and to enforce the same limits. It depends on
oslo.messaging and oslo.context only, so a service that imports
:mod:`rpcapi` (cinder-volume, nova-api) loads no database, cryptography,
policy or driver code.

Addressing (SPEC §2 "Exchanges"): the agent serves topic :data:`TOPIC` on
exchange :data:`EXCHANGE`; clients name that exchange in their own
``Target`` instead of relying on the process-wide ``control_exchange``,
which belongs to the calling service.

The request context travels as :class:`RequestContext`'s ``to_dict()``,
through :class:`RequestContextSerializer`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg
from oslo_context import context as oslo_context

#: Exchange the agent's RPC server listens on and its notifier publishes on.
EXCHANGE = "custos"
#: Topic of the agent's RPC server.
TOPIC = "custos-agent"
#: Topic of the notifications the agent publishes.
NOTIFICATION_TOPIC = "notifications"
#: Modules whose exceptions cross the bus as their own classes.
ALLOWED_EXMODS = ["agent.exception"]

#: Largest secret value, in bytes (before base64).
MAX_SECRET_VALUE_BYTES = 64 * 1024
#: Largest libvirt ``<secret>`` document, in bytes of UTF-8.
MAX_SECRET_XML_BYTES = 64 * 1024
#: Largest managed key, certificate, passphrase or opaque object, in bytes.
MAX_KEY_VALUE_BYTES = 64 * 1024
#: Managed object types, castellan's own ``managed_type()`` names.
KEY_OBJECT_TYPES = ("symmetric", "public", "private", "certificate", "passphrase", "opaque")

# Initiator data keys of the iscsi_chap driver (namespace of its backend).
#: The CHAP user name an initiator logs in with.
CHAP_KEY_USERNAME = "chap_username"
#: What releases before 1.1 kept: the UUID of the CHAP password's secret. The
#: driver finds its secret by usage now; this key is refused and removed.
CHAP_KEY_SECRET = "chap_secret_uuid"
#: Set to ``true`` to make the initiator's next attach get new credentials.
CHAP_KEY_ROTATE = "chap_rotate"


#: ``[auth] strategy`` values: tokens validated by Keystone, or contexts believed.
AUTH_KEYSTONE = "keystone"
AUTH_TRUSTED = "trusted"

#: ``[auth] strategy``, registered by the agent and read by the ``custos`` CLI
#: (which offers role flags only to a trusted agent): one object, so both
#: may register it in one process.
AUTH_STRATEGY_OPT = cfg.StrOpt(
    "strategy", default=AUTH_KEYSTONE, choices=[
        (AUTH_KEYSTONE, "Validate the user and service tokens of every request with "
                        "Keystone ([keystone_authtoken]); what the message claims about "
                        "its caller is ignored."),
        (AUTH_TRUSTED, "Believe the project, user and roles a message claims. Anyone "
                       "who can publish on the bus is whoever they say: only for an "
                       "agent on a private bus without Keystone.")],
    help="Where the identity the policy checks comes from.")


class RequestContext(oslo_context.RequestContext):
    """oslo.context's context with the service token and its identity on the wire.

    oslo.context's own ``to_dict()`` leaves the service token out; the
    agent validates it (``[auth] strategy = keystone``), so it travels.
    """

    FROM_DICT_EXTRA_KEYS = ["service_roles", "service_user_id",
                            "service_project_id", "service_token"]

    def to_dict(self) -> dict[str, Any]:
        """Return the wire form: ``to_dict()`` plus the service fields."""
        values = super().to_dict()
        values.update(service_roles=list(self.service_roles or []),
                      service_user_id=self.service_user_id,
                      service_project_id=self.service_project_id,
                      service_token=self.service_token)
        return values

    def get_logging_values(self) -> dict[str, Any]:
        """Return what log lines may show: oslo.context masks the user token only."""
        values: dict[str, Any] = super().get_logging_values()
        if values.get("service_token"):
            values["service_token"] = "***"  # noqa: S105 - a mask, not a password
        return values


class RequestContextSerializer(messaging.Serializer):
    """Turns :class:`RequestContext` into a dict on the wire and back.

    Entities (arguments and results) are JSON-safe already and pass
    through unchanged.

    :param service_token: returns the calling service's own token, added
        to every context that carries none (None: add nothing).
    """

    def __init__(self, service_token: Callable[[], str | None] | None = None) -> None:
        self.service_token = service_token

    def serialize_entity(self, ctxt: Any, entity: Any) -> Any:
        return entity

    def deserialize_entity(self, ctxt: Any, entity: Any) -> Any:
        return entity

    def serialize_context(self, ctxt: Any) -> dict[str, Any]:
        if isinstance(ctxt, dict):
            return ctxt
        values: dict[str, Any] = ctxt.to_dict()
        # A caller may hand a plain oslo.context context, whose to_dict()
        # leaves the service token and its identity out.
        for key in RequestContext.FROM_DICT_EXTRA_KEYS:
            values.setdefault(key, getattr(ctxt, key, None))
        if self.service_token is not None and not values.get("service_token"):
            values["service_token"] = self.service_token()
        return values

    def deserialize_context(self, ctxt: dict[str, Any]) -> RequestContext:
        return RequestContext.from_dict(ctxt or {})
