"""``[profiler]`` options: osprofiler's own, as Nova and Cinder register them.

Registered through osprofiler so that a deployment tool configures the
agent's tracing with the same options it writes for those services
(``enabled``, ``hmac_keys``, ``connection_string``, ...).
"""

from oslo_config import cfg
from osprofiler import opts as profiler_opts


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register osprofiler's ``[profiler]`` options on ``conf``."""
    profiler_opts.set_defaults(conf)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Return the ``[profiler]`` options for the sample generator."""
    return profiler_opts.list_opts()
