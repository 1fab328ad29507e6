"""RPC endpoint: Secrets (SPEC §3.2)."""

from __future__ import annotations

from agent.dispatch import Endpoint


class SecretEndpoint(Endpoint):
    """Secrets (SPEC §3.2)."""
