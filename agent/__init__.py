"""custos-agent: the worker behind the custos RPC API."""

from importlib import metadata

try:
    __version__ = metadata.version("custos")
except metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"
