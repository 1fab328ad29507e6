"""Run the real console scripts (custos-agent, custos-manage, custos) in tests."""

from __future__ import annotations

import configparser
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.functional.canary import CANARY
from tests.functional.databases import prepare_state

BIN = Path(sys.executable).parent


def script(name: str) -> str:
    """Path of an installed console script of this environment."""
    path = BIN / name
    if not path.exists():
        raise RuntimeError(f"{name} is not installed in {BIN}; run pip install -e .")
    return str(path)


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    """Write an oslo.config file from ``{section: {option: value}}``."""
    parser = configparser.ConfigParser(interpolation=None)
    for section, options in sections.items():
        if section != "DEFAULT":
            parser.add_section(section)
        for key, value in options.items():
            if isinstance(value, (list, tuple)):
                value = ",".join(str(v) for v in value)
            elif isinstance(value, bool):
                value = "true" if value else "false"
            parser.set(section, key, str(value))
    with open(path, "w") as handle:
        parser.write(handle)
    return path


def run_script(name: str, config: Path, *args: str, check: bool = True,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a console script with ``--config-file config`` and capture its output."""
    command = [script(name), "--config-file", str(config), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                            env=_env())
    if check and result.returncode != 0:
        raise AssertionError(f"{name} {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONWARNINGS", None)
    return env


class AgentSetup:
    """What any test agent has: its configuration file, log, database and master key.

    :param workdir: directory for the configuration file and the log.
    :param sections: configuration to write; ``DEFAULT`` must name
        ``transport_url``, ``control_exchange``, ``host`` and
        ``state_path``.
    """

    def __init__(self, workdir: Path, sections: dict[str, dict[str, Any]]) -> None:
        self.workdir = workdir
        self.sections = sections
        self.host = sections["DEFAULT"]["host"]
        self.config = write_config(workdir / f"{self.host}.conf", sections)
        self.log_path = workdir / f"{self.host}.log"

    @property
    def database_url(self) -> str:
        """The agent's database: ``[database] connection`` or its default SQLite file."""
        return str(self.sections.get("database", {}).get("connection") or
                   f"sqlite:///{Path(self.sections['DEFAULT']['state_path']) / 'custos.sqlite'}")

    @property
    def key_file(self) -> Path:
        """The agent's master key file."""
        return Path(self.sections.get("keystore", {}).get(
            "master_key_file", Path(self.sections["DEFAULT"]["state_path"]) / "master.key"))

    def prepare(self) -> None:
        """Migrate the database and create the keys, as an operator would.

        Done in this process (:func:`tests.functional.databases.prepare_state`):
        the console scripts themselves are tested on their own, and two
        process start-ups per agent were most of a test's set-up.
        """
        prepare_state(self.database_url, self.key_file)


class AgentProcess(AgentSetup):
    """One ``custos-agent`` process with its own configuration file (see :class:`AgentSetup`)."""

    def __init__(self, workdir: Path, sections: dict[str, dict[str, Any]]) -> None:
        super().__init__(workdir, sections)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the agent process (does not wait for it to serve).

        Its log and master key join the log canary's watch list.
        """
        CANARY.watch_agent(self.log_path, self.key_file)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([script("custos-agent"), "--config-file", str(self.config)],
                                        stdout=log, stderr=subprocess.STDOUT, env=_env())
        log.close()

    def wait_ready(self, transport: Any, ctxt: Any, timeout: float = 30) -> float:
        """Call ``health`` on this agent until it answers.

        Calls sent before the agent's queue exists are dropped by the
        broker, so each try waits only briefly.

        :returns: seconds from now until the first answer.
        """
        import oslo_messaging as messaging

        from rpcapi import CustosAPI

        api = CustosAPI(transport=transport, timeout=0.5)
        started = time.monotonic()
        deadline = started + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"custos-agent exited {self.process.returncode}:\n{self.log()}")
            try:
                api.health(ctxt, server=self.host)
                return time.monotonic() - started
            except messaging.MessagingTimeout:
                if time.monotonic() > deadline:
                    raise AssertionError(f"custos-agent never answered:\n{self.log()}") from None

    def signal(self, signum: int = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def terminate_timed(self, timeout: float = 40) -> tuple[int, float]:
        """SIGTERM the running agent; return its exit status and the seconds it took to exit."""
        assert self.process is not None
        started = time.monotonic()
        self.signal()
        status = self.process.wait(timeout)
        return status, time.monotonic() - started

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM the agent and return its exit status."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"custos-agent ignored SIGTERM:\n{self.log()}") from None

    def kill(self) -> None:
        """SIGKILL the agent."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        """Everything the agent logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
