"""Client methods for boot roles and dynamic vendordata."""

from __future__ import annotations

from rpcapi.base import BaseAPI


class VendordataAPI(BaseAPI):
    """Methods for boot roles and dynamic vendordata."""
