"""Configuration start-up shared by the agent's console scripts.

``custos-agent`` and ``custos-manage`` call :func:`parse_args`; it is the
one place a custos process applies library defaults
(:func:`agent.conf.opts.set_defaults`: log levels, ``control_exchange =
custos``). The ``custos`` client does not come through here.
"""

from __future__ import annotations

from collections.abc import Sequence

from oslo_config import cfg

import agent
import agent.conf  # noqa: F401  registers custos options on CONF
from agent import log, rpc
from agent.conf import opts

CONF = cfg.CONF


def parse_args(argv: Sequence[str], name: str = "custos",
               default_config_files: list[str] | None = None) -> None:
    """Apply custos' library defaults, then parse the command line and files into CONF."""
    log.register_options(CONF)
    rpc.register_opts(CONF)
    opts.set_defaults()
    CONF(list(argv), project="custos", prog=name, version=agent.__version__,
         default_config_files=default_config_files)
