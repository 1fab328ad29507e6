"""Transport, notifier, RPC server and listener set-up, all in one place.

:func:`init` builds the RPC and notification transports from the global
``CONF`` (oslo.messaging registers its options there, see SPEC §2);
:func:`cleanup` tears them down. Clients and the agent share
:data:`ALLOWED_EXMODS`, so custos errors cross the bus as their own classes.
"""

from __future__ import annotations

import logging
from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg

from agent import context, notifier

CONF = cfg.CONF
LOG = logging.getLogger(__name__)

TOPIC = "custos-agent"
NOTIFICATION_TOPIC = "notifications"
# The rabbit driver names a listener pool's queue after the pool and an RPC
# server's topic queue after the topic: a pool named like the topic would
# share the RPC queue, and the listener would swallow RPC calls.
LISTENER_POOL = "custos-agent-events"
ALLOWED_EXMODS = ["agent.exception"]
CONTROL_EXCHANGE = "custos"

TRANSPORT: messaging.Transport | None = None
NOTIFICATION_TRANSPORT: messaging.Transport | None = None


class NotificationSerializer(context.RequestContextSerializer):
    """Serializes a notification's context without any credential in it."""

    def serialize_context(self, ctxt: Any) -> dict[str, Any]:
        values = context.redacted(ctxt)
        for key in context.SENSITIVE_KEYS:
            values.pop(key, None)
        return values


def set_defaults(conf: cfg.ConfigOpts | None = None) -> None:
    """Register oslo.messaging's options on ``conf`` and give it custos' exchange.

    Registering up front lets commands and tests set ``transport_url``
    before any transport exists.
    """
    conf = conf or CONF
    messaging.TransportURL.parse(conf)  # registers transport_url and friends
    messaging.set_transport_defaults(control_exchange=CONTROL_EXCHANGE)


def init(conf: cfg.ConfigOpts | None = None) -> None:
    """Build the RPC and notification transports from ``conf``."""
    global TRANSPORT, NOTIFICATION_TRANSPORT
    conf = conf or CONF
    set_defaults()
    TRANSPORT = messaging.get_rpc_transport(conf, allowed_remote_exmods=ALLOWED_EXMODS)
    NOTIFICATION_TRANSPORT = messaging.get_notification_transport(
        conf, allowed_remote_exmods=ALLOWED_EXMODS)


def initialized() -> bool:
    """True between :func:`init` and :func:`cleanup`."""
    return TRANSPORT is not None


def cleanup() -> None:
    """Close both transports."""
    global TRANSPORT, NOTIFICATION_TRANSPORT
    for transport in (TRANSPORT, NOTIFICATION_TRANSPORT):
        if transport is not None:
            transport.cleanup()
    TRANSPORT = NOTIFICATION_TRANSPORT = None


def get_rpc_server(host: str, endpoints: list[Any]) -> messaging.RPCServer:
    """Return an RPC server on topic ``custos-agent`` named ``host``.

    The executor argument is left out on purpose: without eventlet
    monkey-patching oslo.messaging picks its threading executor, sized by
    ``executor_thread_pool_size``.
    """
    assert TRANSPORT is not None, "agent.rpc.init() was not called"
    target = messaging.Target(topic=TOPIC, server=host)
    return messaging.get_rpc_server(
        TRANSPORT, target, endpoints,
        serializer=context.RequestContextSerializer(),
        access_policy=messaging.DefaultRPCAccessPolicy)


def get_notifier(host: str) -> notifier.BrokerNotifier:
    """Return the agent's notifier: ``messagingv2`` on topic ``notifications``."""
    assert NOTIFICATION_TRANSPORT is not None, "agent.rpc.init() was not called"
    return notifier.BrokerNotifier(NOTIFICATION_TRANSPORT, publisher_id=f"custos-agent.{host}",
                                   topics=[NOTIFICATION_TOPIC],
                                   serializer=NotificationSerializer())


def get_notification_listener(endpoints: list[Any], pool: str) -> Any:
    """Return a listener on topic ``notifications`` that requeues on failure.

    :param pool: listener pool; agents in one pool share the events, so
        each event is handled by one of them.
    """
    assert NOTIFICATION_TRANSPORT is not None, "agent.rpc.init() was not called"
    return messaging.get_notification_listener(
        NOTIFICATION_TRANSPORT, [messaging.Target(topic=NOTIFICATION_TOPIC)], endpoints,
        allow_requeue=True, pool=pool, serializer=context.RequestContextSerializer())
