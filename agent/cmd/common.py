"""Configuration and logging start-up shared by the console scripts."""

from __future__ import annotations

from collections.abc import Sequence

from oslo_config import cfg

import agent
import agent.conf  # noqa: F401  registers custos options on CONF
from agent import log, rpc

CONF = cfg.CONF


def parse_args(argv: Sequence[str], name: str = "custos",
               default_config_files: list[str] | None = None) -> None:
    """Parse the command line and configuration files into the global CONF."""
    log.register_options(CONF)
    rpc.set_defaults()
    CONF(list(argv), project="custos", prog=name, version=agent.__version__,
         default_config_files=default_config_files)
