"""Client methods for secrets (libvirt virSecret)."""

from __future__ import annotations

from rpcapi.base import BaseAPI


class SecretsAPI(BaseAPI):
    """Methods for secrets (libvirt virSecret)."""
