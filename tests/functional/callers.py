"""Processes that configure oslo.messaging as Cinder and Nova do, then use rpcapi.

Run as ``python -m tests.functional.callers {cinder-volume|nova-api} CONFIG URL``
(CONFIG names ``transport_url``, as the service's own file does);
prints one JSON object with what the caller observed. Each runs in a
fresh interpreter because oslo.messaging's defaults are process-wide,
which is the point: custos' client must leave them as the service set them.

cinder-volume (cinder/rpc.py, cinder/cmd/volume.py): the process sets
``control_exchange = cinder`` with ``set_transport_defaults``, parses its
configuration, then builds one RPC transport with ``get_rpc_transport(CONF,
allowed_remote_exmods=...)``, which it hands to custos' client.

nova-api (nova/rpc.py, nova/config.py): ``control_exchange = nova``; the
client is built with no transport of its own, and a cell's transport is
created lazily afterwards (nova/context.py ``set_target_cell``), so it
must still come out on exchange ``nova``.
"""

from __future__ import annotations

import base64
import json
import sys
import uuid
from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg
from oslo_context import context as oslo_context

CONF = cfg.CONF
# The services list their own exception modules; custos' are added to them.
EXMODS = ["agent.exception"]


def _context() -> oslo_context.RequestContext:
    # A service passes its own oslo.context subclass, not custos' one.
    return oslo_context.RequestContext(project_id=uuid.uuid4().hex, user_id=uuid.uuid4().hex,
                                       roles=["member"], overwrite=False)


def _secret_round_trip(api: Any) -> dict[str, Any]:
    ctxt = _context()
    secret = api.secret_define_xml(ctxt, "<secret ephemeral='no' private='no'><usage type='ceph'>"
                                         f"<name>client.{uuid.uuid4().hex}</name></usage></secret>")
    api.secret_set_value(ctxt, secret, b"volume key \x00\xff")
    value = api.secret_get_value(ctxt, secret)
    return {"value": base64.b64encode(value).decode("ascii")}


def cinder_volume(config: str, url: str) -> dict[str, Any]:
    """Configure as cinder-volume, hand the transport to CustosAPI, call it."""
    messaging.set_transport_defaults(control_exchange="cinder")
    CONF(["--config-file", config], project="cinder")
    transport = messaging.get_rpc_transport(CONF, allowed_remote_exmods=EXMODS)

    from rpcapi import CustosAPI

    api = CustosAPI(transport=transport, timeout=30)
    result = {"health": api.health(_context()), **_secret_round_trip(api),
              "control_exchange": CONF.control_exchange}
    transport.cleanup()
    return result


class _Compute:
    target = messaging.Target(version="6.0")

    def ping(self, ctxt: Any, tag: str) -> str:
        return f"pong-{tag}"


def _cell_transport_exchange(url: str) -> str:
    """Create a cell transport now, after custos' client; return 'nova' if it uses it.

    A server on the cell transport, with no exchange of its own, answers a
    client that names exchange ``nova`` explicitly only if the cell
    transport consumes exchange ``nova``.
    """
    cell = messaging.get_rpc_transport(CONF, url=url, allowed_remote_exmods=EXMODS)
    probe = messaging.get_rpc_transport(CONF, url=url, allowed_remote_exmods=EXMODS)
    topic = f"compute-{uuid.uuid4().hex[:8]}"
    server = messaging.get_rpc_server(cell, messaging.Target(topic=topic, server="cell1"),
                                      [_Compute()])
    server.start()
    try:
        client = messaging.get_rpc_client(
            probe, messaging.Target(exchange="nova", topic=topic, server="cell1",
                                    version="6.0"), timeout=30)
        answer = client.call({}, "ping", tag="nova")
        return "nova" if answer == "pong-nova" else answer
    finally:
        server.stop()
        server.wait()
        cell.cleanup()
        probe.cleanup()


def nova_api(config: str, url: str) -> dict[str, Any]:
    """Configure as nova-api, build CustosAPI without a transport, then a cell transport.

    :param url: the cell's transport URL (in Nova, from its cell mapping).
    """
    messaging.set_transport_defaults(control_exchange="nova")
    CONF(["--config-file", config], project="nova")
    transport = messaging.get_rpc_transport(CONF, allowed_remote_exmods=EXMODS)

    from rpcapi import CustosAPI
    from rpcapi import base as rpcapi_base

    api = CustosAPI(timeout=30)
    result = {"health": api.health(_context()), **_secret_round_trip(api),
              "control_exchange": CONF.control_exchange,
              "cell_exchange": _cell_transport_exchange(url)}
    rpcapi_base.cleanup_default_transport()
    transport.cleanup()
    return result


def main() -> None:
    role, config, url = sys.argv[1:4]
    result = {"cinder-volume": cinder_volume, "nova-api": nova_api}[role](config, url)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
