"""RPC endpoint: Glance metadata and backup metadata (SPEC §3.3)."""

from __future__ import annotations

from agent.dispatch import Endpoint


class BackupEndpoint(Endpoint):
    """Glance metadata and backup metadata (SPEC §3.3)."""
