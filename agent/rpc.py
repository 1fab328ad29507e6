"""Transport, notifier, RPC server and listener set-up, all in one place.

:func:`init` builds the RPC and notification transports from the global
``CONF`` (oslo.messaging registers its options there, see SPEC §2);
:func:`cleanup` tears them down. The addresses and the exception modules
allowed over the bus come from :mod:`agent.wire`, which clients share: the
RPC server names exchange ``custos`` in its own ``Target``, as clients do,
so it answers them whatever ``control_exchange`` says. ``control_exchange``
(default ``custos``, set by :func:`agent.conf.opts.set_defaults` at start-up)
decides where the notifier publishes.
"""

from __future__ import annotations

import logging
from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg

from agent import context, wire

CONF = cfg.CONF
LOG = logging.getLogger(__name__)

TOPIC = wire.TOPIC
NOTIFICATION_TOPIC = wire.NOTIFICATION_TOPIC
# The rabbit driver names a listener pool's queue after the pool and an RPC
# server's topic queue after the topic: a pool named like the topic would
# share the RPC queue, and the listener would swallow RPC calls.
LISTENER_POOL = "custos-agent-events"
ALLOWED_EXMODS = wire.ALLOWED_EXMODS
CONTROL_EXCHANGE = wire.EXCHANGE

TRANSPORT: messaging.Transport | None = None
NOTIFICATION_TRANSPORT: messaging.Transport | None = None


class NotificationSerializer(context.RequestContextSerializer):
    """Serializes a notification's context without any credential in it."""

    def serialize_context(self, ctxt: Any) -> dict[str, Any]:
        values = context.redacted(ctxt)
        for key in context.SENSITIVE_KEYS:
            values.pop(key, None)
        return values


def register_opts(conf: cfg.ConfigOpts | None = None) -> None:
    """Register oslo.messaging's transport options on ``conf``.

    Registering up front lets commands and tests set ``transport_url``
    before any transport exists. Defaults are left alone.
    """
    messaging.TransportURL.parse(conf or CONF)  # registers transport_url and friends


def broker_hosts(conf: cfg.ConfigOpts | None = None) -> list[tuple[str, int]]:
    """Return the ``(host, port)`` of every broker node in ``transport_url``."""
    conf = conf or CONF
    url = messaging.TransportURL.parse(conf)
    return [(host.hostname or "127.0.0.1", host.port or 5672) for host in url.hosts] or [
        ("127.0.0.1", 5672)]


def init(conf: cfg.ConfigOpts | None = None) -> None:
    """Build the RPC and notification transports from ``conf``."""
    global TRANSPORT, NOTIFICATION_TRANSPORT
    conf = conf or CONF
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
    """Return an RPC server on exchange ``custos``, topic ``custos-agent``, named ``host``.

    The executor argument is left out on purpose: without eventlet
    monkey-patching oslo.messaging picks its threading executor, sized by
    ``executor_thread_pool_size``.
    """
    assert TRANSPORT is not None, "agent.rpc.init() was not called"
    target = messaging.Target(exchange=wire.EXCHANGE, topic=TOPIC, server=host)
    return messaging.get_rpc_server(
        TRANSPORT, target, endpoints,
        serializer=context.RequestContextSerializer(),
        access_policy=messaging.DefaultRPCAccessPolicy)


def get_notifier(host: str) -> messaging.Notifier:
    """Return the agent's notifier: ``messagingv2`` on topic ``notifications``."""
    assert NOTIFICATION_TRANSPORT is not None, "agent.rpc.init() was not called"
    return messaging.Notifier(NOTIFICATION_TRANSPORT, publisher_id=f"custos-agent.{host}",
                              driver="messagingv2", topics=[NOTIFICATION_TOPIC],
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
