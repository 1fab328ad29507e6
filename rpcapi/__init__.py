"""Client side of the custos-agent RPC API.

Callers (cinder-volume, nova-api, the ``custos`` CLI) import
:class:`CustosAPI`; its docstring is the version history.
"""

RPC_API_VERSION = "1.0"

from rpcapi.client import CustosAPI  # noqa: E402

__all__ = ["CustosAPI", "RPC_API_VERSION"]
