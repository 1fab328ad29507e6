"""The two servers a benchmark run compares: the no-op baseline and custos-agent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import oslo_messaging as messaging

from benchmarks import LAUNCH_ENV

BIN = Path(sys.executable).parent
NOOP_TOPIC = "custos-noop"


def status_field(pid: int, field: str) -> int:
    """The number of ``field`` in /proc/<pid>/status (``VmRSS`` in KiB, ``Threads``).

    :raises RuntimeError: when /proc does not report it.
    """
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


def resident_kib(pid: int) -> int:
    """The resident set size (``VmRSS``) of process ``pid``, in KiB."""
    return status_field(pid, "VmRSS")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process ``pid`` has used so far, in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name may hold spaces; the fields after it are fixed.
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerProcess:
    """A server subprocess whose output goes to a log file."""

    def __init__(self, name: str, command: list[str], log_path: Path) -> None:
        self.name = name
        self.command = command
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process; does not wait for it to serve."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                            env=dict(LAUNCH_ENV))

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM the process and wait for it; SIGKILL when it does not stop."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def noop_server(url: str, exchange: str, workdir: Path) -> ServerProcess:
    """The baseline server process (not started)."""
    command = [sys.executable, "-m", "benchmarks.noop_server", "--url", url,
               "--exchange", exchange, "--topic", NOOP_TOPIC, "--server", "noop-1"]
    return ServerProcess("noop", command, workdir / "noop.log")


def prepare_agent(config: Path) -> None:
    """Migrate the database and create the master key, as an operator would first."""
    for args in (["db", "sync"], ["keys", "init"]):
        subprocess.run([str(BIN / "custos-manage"), "--config-file", str(config), *args],
                       check=True, capture_output=True, timeout=120)


def custos_agent(config: Path, workdir: Path) -> ServerProcess:
    """A custos-agent process on ``config`` (not started; see :func:`prepare_agent`)."""
    return ServerProcess("custos-agent", [str(BIN / "custos-agent"), "--config-file",
                                          str(config)], workdir / "custos-agent.log")


def time_to_first_reply(server: ServerProcess, probe: Callable[[], object],
                        interval: float = 0.02, timeout: float = 60) -> float:
    """Start ``server`` and return the seconds until ``probe`` first gets a reply.

    A call sent before the server's queue exists is dropped by the broker,
    so probes go out every ``interval`` seconds, each in its own thread
    with a short timeout; the first answer to arrive ends the wait.

    :raises RuntimeError: when the server exits or never answers.
    """
    answered: list[float] = []
    lock = threading.Lock()
    done = threading.Event()

    def one_probe() -> None:
        try:
            probe()
        except messaging.MessagingTimeout:
            return
        with lock:
            if not answered:
                answered.append(time.monotonic())
                done.set()

    started = time.monotonic()
    server.start()
    while not done.wait(interval):
        if server.exited():
            raise RuntimeError(f"{server.name} exited:\n{server.log_tail()}")
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"{server.name} never answered:\n{server.log_tail()}")
        threading.Thread(target=one_probe, daemon=True).start()
    return answered[0] - started
