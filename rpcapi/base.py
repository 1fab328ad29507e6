"""What every custos client method needs: the RPC client and call helpers."""

from __future__ import annotations

from typing import Any

import oslo_messaging as messaging

from agent import context, rpc


class BaseAPI:
    """Holds the oslo.messaging client; domain mixins add the methods.

    :param transport: an oslo.messaging transport; by default the one
        :func:`agent.rpc.init` builds from the global ``CONF``.
    :param server: address one agent (needed for ephemeral secrets);
        None lets any agent on the topic answer.
    :param version_cap: the highest API version to send, during upgrades.
    :param timeout: seconds a call waits for its reply.
    :param retry: connection retries when the broker cannot be reached
        (None: forever, 0: fail at once with ``MessageDeliveryFailure``).
    """

    RPC_API_VERSION = "1.0"

    def __init__(self, transport: messaging.Transport | None = None,
                 server: str | None = None, version_cap: str | None = None,
                 timeout: float | None = None, retry: int | None = None) -> None:
        self.retry = retry
        if transport is None:
            if not rpc.initialized():
                rpc.init()
            transport = rpc.TRANSPORT
        target = messaging.Target(topic=rpc.TOPIC, server=server, version="1.0")
        self.client = messaging.get_rpc_client(
            transport, target, version_cap=version_cap, timeout=timeout,
            serializer=context.RequestContextSerializer())

    def can_send_version(self, version: str) -> bool:
        """True when the version cap allows sending ``version``."""
        return bool(self.client.can_send_version(version))

    def _call(self, ctxt: Any, method: str, *, version: str = "1.0",
              server: str | None = None, **kwargs: Any) -> Any:
        return self._prepare(version, server).call(ctxt, method, **kwargs)

    def _prepare(self, version: str, server: str | None) -> Any:
        options: dict[str, Any] = {"version": version, "retry": self.retry}
        if server:
            options["server"] = server
        return self.client.prepare(**options)

    def _cast(self, ctxt: Any, method: str, *, wait: bool = False,
              version: str = "1.0", server: str | None = None, **kwargs: Any) -> Any:
        """Cast ``method``; with ``wait`` call it and return after the commit.

        A cast is at-most-once (oslo.messaging acknowledges before
        dispatch); callers that must not lose the write pass ``wait=True``.
        """
        if wait:
            return self._call(ctxt, method, version=version, server=server, **kwargs)
        self._prepare(version, server).cast(ctxt, method, **kwargs)
        return None
