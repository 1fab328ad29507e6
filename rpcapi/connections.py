"""Client methods for connections and driver initiator data."""

from __future__ import annotations

from rpcapi.base import BaseAPI


class ConnectionsAPI(BaseAPI):
    """Methods for connections and driver initiator data."""
