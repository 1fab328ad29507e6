"""RPC endpoint: Connections and driver initiator data (SPEC §3.1)."""

from __future__ import annotations

from agent.dispatch import Endpoint


class ConnectionEndpoint(Endpoint):
    """Connections and driver initiator data (SPEC §3.1)."""
