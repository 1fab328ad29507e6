"""RPC endpoint: Boot roles and dynamic vendordata (SPEC §3.5)."""

from __future__ import annotations

from agent.dispatch import Endpoint


class VendordataEndpoint(Endpoint):
    """Boot roles and dynamic vendordata (SPEC §3.5)."""
