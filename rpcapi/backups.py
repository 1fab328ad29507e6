"""Client methods for glance metadata and backup metadata."""

from __future__ import annotations

from rpcapi.base import BaseAPI


class BackupsAPI(BaseAPI):
    """Methods for glance metadata and backup metadata."""
