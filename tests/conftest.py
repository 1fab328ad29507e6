"""Fixtures shared by unit and functional tests."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
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
from tests.stub_server import HANDLER_LIMIT, StubServer

# After agent.cmd, which silences eventlet's import-time notice.
from futurist import _thread as futurist_thread  # noqa: E402,I001

CONF = cfg.CONF
REPO_ROOT = Path(__file__).resolve().parents[1]
CORPUS = REPO_ROOT.parent / "shared" / "corpus"

agent_log.register_options(CONF)
rpc.register_opts(CONF)
conf_opts.set_defaults()  # as the agent's start-up does

# An RPC server's idle worker threads look for shutdown once per
# MAX_IDLE_FOR (1 s), so every in-process agent a test stops would cost a
# second of waiting; workers here look ten times a second instead.
futurist_thread.ThreadWorker.MAX_IDLE_FOR = 0.1


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
    # The tests written for claimed contexts; the keystone strategy's own
    # tests set it back (tests/unit/identity, tests/functional/test_identity*).
    fixture.config(strategy="trusted", group="auth")
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


@pytest.fixture
def server() -> Iterator[StubServer]:
    """A threaded HTTP server on 127.0.0.1 (tests/stub_server.py), stopped after the test."""
    srv = StubServer()
    thread = threading.Thread(target=srv.serve_forever,
                              kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.stopping.set()
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=HANDLER_LIMIT)


TYPE_CHECK = [sys.executable, "-m", "mypy", "--config-file", str(REPO_ROOT / "setup.cfg"),
              "--no-incremental", *(str(REPO_ROOT / package) for package in ("agent", "rpcapi", "db"))]
_type_check: subprocess.Popen[str] | None = None


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start mypy as soon as the run is known to need it.

    It then checks the packages on the core the other tests leave idle
    while they wait for brokers, databases and processes, instead of
    holding up the run for its own half-minute or more.
    """
    global _type_check
    if any("type_check" in getattr(item, "fixturenames", ()) for item in session.items):
        _type_check = subprocess.Popen(TYPE_CHECK, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT)


@pytest.fixture(scope="session")
def type_check() -> tuple[int, str]:
    """mypy's exit status and output for agent, rpcapi and db (configuration in setup.cfg)."""
    global _type_check
    process = _type_check or subprocess.Popen(TYPE_CHECK, stdout=subprocess.PIPE,
                                              stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT)
    _type_check = None
    output, _ = process.communicate(timeout=900)
    return process.returncode, output
