"""custos-agent: the worker behind the custos RPC API.

Importing this package costs nothing beyond itself: :mod:`rpcapi` and the
``custos`` CLI import it on their way to :mod:`agent.wire`, so the
distribution's version is looked up only when ``agent.__version__`` is read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    __version__: str
else:
    def __getattr__(name: str) -> str:
        if name != "__version__":
            raise AttributeError(f"module 'agent' has no attribute {name!r}")
        from importlib import metadata

        try:
            version = metadata.version("custos")
        except metadata.PackageNotFoundError:  # running from a source tree
            version = "0+unknown"
        globals()["__version__"] = version
        return version
