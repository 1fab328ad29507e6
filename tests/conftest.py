"""Fixtures shared by unit and functional tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from oslo_config import cfg
from oslo_config import fixture as config_fixture

import agent.cmd  # noqa: F401  library deprecation notices off, as for the commands
import agent.conf  # noqa: F401  registers custos options
from agent import log as agent_log
from agent import policy, rpc
from agent.conf import opts as conf_opts
from agent.keystore import masterkey
from db import api as db_api

CONF = cfg.CONF
REPO_ROOT = Path(__file__).resolve().parents[1]
CORPUS = REPO_ROOT.parent / "shared" / "corpus"

agent_log.register_options(CONF)
rpc.register_opts(CONF)
conf_opts.set_defaults()  # as the agent's start-up does


@pytest.fixture
def conf(tmp_path: Path) -> Iterator[cfg.ConfigOpts]:
    """The global CONF, parsed empty, with state under a fresh temp dir.

    oslo.config's fixture undoes every override afterwards; the
    process-wide engine, enforcer and key ring are forgotten too, so tests
    do not leak into each other.
    """
    fixture = config_fixture.Config(CONF)
    fixture.setUp()
    CONF([], project="custos", default_config_files=[])
    fixture.config(state_path=str(tmp_path), host="unit-agent")
    try:
        yield CONF
    finally:
        db_api.dispose()
        policy.reset()
        masterkey.reset_ring()
        fixture.cleanUp()


@pytest.fixture
def captured_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every log record at DEBUG and above, for leak checks."""
    caplog.set_level(logging.DEBUG)
    return caplog
