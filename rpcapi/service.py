"""Client methods about the agent itself."""

from __future__ import annotations

from typing import Any

from rpcapi.base import BaseAPI


class ServiceAPI(BaseAPI):
    def health(self, ctxt: Any, server: str | None = None) -> dict[str, Any]:
        """Ask an agent for its version and the state of its parts.

        :returns: ``{version, rpc_api_version, host, database, master_key,
            uptime_s}``.
        """
        return self._call(ctxt, "health", server=server)
