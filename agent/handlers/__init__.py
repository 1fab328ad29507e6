"""RPC endpoints by domain, thin: validate, call the domain code, reply.

Each module holds one endpoint class; :func:`build_endpoints` makes the
list the agent's RPC server dispatches to, in this order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.handlers import backups, connections, events, keys, secrets, service, vendordata

if TYPE_CHECKING:
    from agent.runtime import Runtime


def build_endpoints(runtime: Runtime) -> list[Any]:
    """Return one instance of every RPC endpoint, sharing ``runtime``."""
    return [service.ServiceEndpoint(runtime),
            secrets.SecretEndpoint(runtime),
            connections.ConnectionEndpoint(runtime),
            backups.BackupEndpoint(runtime),
            vendordata.VendordataEndpoint(runtime),
            keys.KeyEndpoint(runtime)]


def build_listener_endpoints(runtime: Runtime) -> list[Any]:
    """Return the endpoints of the shared notification listener pool (SPEC §3.6)."""
    return events.build(runtime)


def build_memory_listener_endpoints(runtime: Runtime) -> list[Any]:
    """Return the endpoints of this agent's own listener pool (SPEC §3.6)."""
    return events.build_memory(runtime)
