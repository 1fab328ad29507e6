"""What every custos client method needs: the RPC client, versions and helpers.

The client addresses exchange ``custos`` in its own ``Target``, so it
works on whatever transport the calling service hands it (cinder-volume's,
nova-api's) and never changes that process's oslo.messaging defaults:
no ``set_transport_defaults``, no ``control_exchange`` override.

Each method sends the lowest API version that has it, so an agent that
is not upgraded yet still answers the 1.0 methods. A method added in a
later version first checks the version cap (``[upgrade_levels] custos``
or the ``version_cap`` argument) and, when capped, raises
:class:`agent.exception.RPCVersionCapped` without sending anything.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, ClassVar

import oslo_messaging as messaging
from oslo_config import cfg

from agent import exception, wire
from rpcapi import service_token as service_token_source

CONF = cfg.CONF

upgrade_levels_opts: list[cfg.Opt] = [
    cfg.StrOpt(
        "custos",
        help="Highest custos RPC API version this service sends, while "
             "agents are upgraded one by one (for example 1.0). Methods "
             "of a later version are refused on the client side. Unset: "
             "the client's own version."),
]

#: Default of :class:`BaseAPI`'s ``service_token``: read ``[service_user]``.
FROM_CONF = object()

_transport_lock = threading.Lock()
_default_transport: messaging.Transport | None = None


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register ``[upgrade_levels] custos`` on ``conf`` (idempotent)."""
    conf.register_opts(upgrade_levels_opts, group="upgrade_levels")


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Return the client's options for the sample generator."""
    return [("upgrade_levels", upgrade_levels_opts)]


def default_transport() -> messaging.Transport:
    """Return this process's shared RPC transport, built once from the global CONF.

    Built with ``allowed_remote_exmods`` naming :mod:`agent.exception`;
    ``control_exchange`` is left as the process has it.
    """
    global _default_transport
    with _transport_lock:
        if _default_transport is None:
            _default_transport = messaging.get_rpc_transport(
                CONF, allowed_remote_exmods=wire.ALLOWED_EXMODS)
        return _default_transport


def cleanup_default_transport() -> None:
    """Close the transport :func:`default_transport` built, if any."""
    global _default_transport
    with _transport_lock:
        if _default_transport is not None:
            _default_transport.cleanup()
            _default_transport = None


class BaseAPI:
    """Holds the oslo.messaging client; domain mixins add the methods.

    :param transport: an oslo.messaging transport; by default one shared
        per process, built from the global ``CONF`` by
        :func:`default_transport`.
    :param server: address one agent (needed for ephemeral secrets);
        None lets any agent on the topic answer.
    :param version_cap: the highest API version to send, during upgrades;
        None reads ``[upgrade_levels] custos``.
    :param timeout: seconds a call waits for its reply.
    :param retry: connection retries when the broker cannot be reached
        (None: forever, 0: fail at once with ``MessageDeliveryFailure``).
    :param service_token: returns the calling service's own token, added to
        each request whose context carries none; by default the one
        ``[service_user]`` of the global ``CONF`` describes, when its
        ``send_service_user_token`` is on (:mod:`rpcapi.service_token`).
    """

    #: The API version this client speaks (see :class:`rpcapi.CustosAPI`).
    RPC_API_VERSION: ClassVar[str]
    #: The version of the methods every agent has.
    RPC_BASE_VERSION: ClassVar[str]

    def __init__(self, transport: messaging.Transport | None = None,
                 server: str | None = None, version_cap: str | None = None,
                 timeout: float | None = None, retry: int | None = None,
                 service_token: Callable[[], str] | None | object = FROM_CONF) -> None:
        self.retry = retry
        if service_token is FROM_CONF:
            service_token = service_token_source.from_conf(CONF)
        if version_cap is None:
            register_opts(CONF)
            version_cap = CONF.upgrade_levels.custos or None
        self.version_cap = version_cap
        if transport is None:
            transport = default_transport()
        target = messaging.Target(exchange=wire.EXCHANGE, topic=wire.TOPIC,
                                  server=server, version=self.RPC_API_VERSION)
        self.client = messaging.get_rpc_client(
            transport, target, version_cap=version_cap, timeout=timeout,
            serializer=wire.RequestContextSerializer(
                service_token=service_token))  # type: ignore[arg-type]

    def can_send_version(self, version: str) -> bool:
        """True when the version cap allows sending ``version``."""
        return bool(self.client.can_send_version(version))

    def _prepare(self, method: str, version: str | None, server: str | None) -> Any:
        """Return a client context for ``method`` at ``version``.

        :raises agent.exception.RPCVersionCapped: the cap is below ``version``.
        """
        version = version or self.RPC_BASE_VERSION
        if not self.can_send_version(version):
            raise exception.RPCVersionCapped(method=method, version=version,
                                             cap=self.version_cap)
        options: dict[str, Any] = {"version": version, "retry": self.retry}
        if server:
            options["server"] = server
        return self.client.prepare(**options)

    def _call(self, ctxt: Any, method: str, *, version: str | None = None,
              server: str | None = None, **kwargs: Any) -> Any:
        """Call ``method`` and return its result.

        :param version: the API version that added ``method``; None for
            the base version.
        :raises agent.exception.RPCVersionCapped: the cap is below ``version``.
        """
        return self._prepare(method, version, server).call(ctxt, method, **kwargs)

    def _cast(self, ctxt: Any, method: str, *, wait: bool = False,
              version: str | None = None, server: str | None = None,
              **kwargs: Any) -> Any:
        """Cast ``method``; with ``wait`` call it and return after the commit.

        A cast is at-most-once (oslo.messaging acknowledges before
        dispatch); callers that must not lose the write pass ``wait=True``.
        """
        if wait:
            return self._call(ctxt, method, version=version, server=server, **kwargs)
        self._prepare(method, version, server).cast(ctxt, method, **kwargs)
        return None
