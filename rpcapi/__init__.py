"""Client side of the custos-agent RPC API.

Callers (cinder-volume, nova-api, the ``custos`` CLI) import
:class:`CustosAPI`; its docstring is the version history. This package
imports only :mod:`agent.exception`, :mod:`agent.wire` and oslo libraries.
"""

from rpcapi.client import CustosAPI

RPC_API_VERSION = CustosAPI.RPC_API_VERSION

__all__ = ["CustosAPI", "RPC_API_VERSION"]
