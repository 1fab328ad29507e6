"""The agent served from the test process, on the real RabbitMQ and database.

For tests where the process is not the point: no interpreter start-up,
imports or shutdown of a ``custos-agent`` process, as oslo.messaging's
functional tests run their RPC servers in the test process
(``RpcServerFixture``). :class:`InProcessAgent` offers what tests use of
:class:`~tests.functional.agentproc.AgentProcess`: its configuration
file (the ``custos`` CLI reaches it over the bus), its sections, its
log and its master key, which the log canary watches as a process's.

The agent's modules keep their engine, transports and configuration in
globals, so one in-process agent runs at a time; it parses its
configuration file into the global ``CONF`` and gives the session's
parsed, empty configuration back when it stops.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from oslo_config import cfg
from oslo_log import formatters

import agent
from agent import log as agent_log
from agent import policy
from agent.keystore import masterkey
from agent.service import AgentService
from db import api as db_api
from tests.functional.agentproc import AgentSetup
from tests.functional.canary import CANARY

CONF = cfg.CONF


class InProcessAgent(AgentSetup):
    """One agent served by :class:`AgentService` in this process (see :class:`AgentSetup`)."""

    running: InProcessAgent | None = None

    def __init__(self, workdir: Path, sections: dict[str, dict[str, Any]]) -> None:
        super().__init__(workdir, sections)
        self.service: AgentService | None = None
        self._handler: logging.Handler | None = None
        self._levels: dict[str, int] = {}

    def _log_to_file(self) -> None:
        # What custos-agent writes at DEBUG (debug = true), in oslo.log's
        # format, with its masking filter, control characters escaped and
        # library log levels, into the file the canary reads.
        handler = logging.FileHandler(self.log_path)
        handler.setFormatter(formatters.ContextFormatter(
            project="custos", version=agent.__version__, datefmt=CONF.log_date_format,
            config=CONF))
        agent_log.protect(handler)
        root = logging.getLogger()
        self._levels[""] = root.level
        root.setLevel(logging.DEBUG)
        for entry in CONF.default_log_levels:
            name, _, level = entry.partition("=")
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            logger.setLevel(logging.getLevelName(level.upper()))
        root.addHandler(handler)
        self._handler = handler

    def _restore_logging(self) -> None:
        if self._handler is not None:
            logging.getLogger().removeHandler(self._handler)
            self._handler.close()
            self._handler = None
        for name, level in self._levels.items():
            logging.getLogger(name or None).setLevel(level)
        self._levels.clear()

    def start(self) -> None:
        """Start serving; returns once the RPC server and listener run.

        :raises AssertionError: when another in-process agent runs.
        """
        assert InProcessAgent.running is None, "one in-process agent at a time"
        CANARY.watch_agent(self.log_path, self.key_file)
        CONF(["--config-file", str(self.config)], project="custos", default_config_files=[])
        self._log_to_file()
        InProcessAgent.running = self
        service = AgentService(CONF)
        try:
            service.start()
        except BaseException:
            self._reset()
            raise
        self.service = service

    def wait_ready(self, transport: Any, ctxt: Any, timeout: float = 30) -> float:
        """Serving already: :meth:`start` returns once the server runs."""
        return 0.0

    def stop(self, timeout: float = 30) -> int:
        """Stop taking messages, finish in-flight requests; returns 0 as the process would."""
        if self.service is not None:
            self.service.stop()
            self.service.wait()
            self.service = None
        if InProcessAgent.running is self:
            self._reset()
        return 0

    def kill(self) -> None:
        """Stop at once (as far as a thread can be)."""
        self.stop()

    def _reset(self) -> None:
        db_api.dispose()
        policy.reset()
        masterkey.reset_ring()
        self._restore_logging()
        CONF([], project="custos", default_config_files=[])
        InProcessAgent.running = None

    def log(self) -> str:
        """Everything logged in this process while the agent ran."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
