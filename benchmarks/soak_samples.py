"""What the soak samples while it runs: each agent's resources, the broker's queues.

Every ``interval`` seconds :class:`Sampler` reads, for each agent process,
its resident memory, thread count and open files from /proc, its database
connections (sockets to PostgreSQL as the server counts them, or open
descriptors of the SQLite file), the size of its log and the CPU time it
used, the machine's load average, and for the
run's virtual host the messages (ready and unacknowledged) in every queue,
as ``rabbitmqctl list_queues`` reports them.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import processes


def thread_count(pid: int) -> int:
    """How many threads process ``pid`` runs (``Threads:`` of /proc/<pid>/status)."""
    return processes.status_field(pid, "Threads")


def open_files(pid: int) -> list[str]:
    """What each open descriptor of process ``pid`` points at."""
    directory = f"/proc/{pid}/fd"
    targets = []
    for name in os.listdir(directory):
        try:
            targets.append(os.readlink(f"{directory}/{name}"))
        except OSError:
            continue  # closed between the listing and the read
    return targets


@dataclass
class Sample:
    """One reading of the whole run."""

    at: float
    requests: int
    #: Per agent host: ``rss_kib``, ``threads``, ``open_files``, ``log_bytes``,
    #: ``cpu_ms`` (CPU time used so far) and on SQLite ``db_connections``.
    agents: dict[str, dict[str, int]] = field(default_factory=dict)
    #: The machine's load average over the last minute.
    load: float = 0.0
    #: PostgreSQL's count of the agents' connections (None on SQLite).
    db_connections: int | None = None
    #: Queue name: messages ready or unacknowledged.
    queues: dict[str, int] = field(default_factory=dict)


class DatabaseCounter:
    """Counts the agents' connections to the run's database.

    :param url: the database URL (``sqlite:///...`` or ``postgresql+psycopg2://...``).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite_file = (os.path.realpath(url.split("sqlite:///", 1)[1])
                            if url.startswith("sqlite") else None)
        self._connection: Any = None
        if self.sqlite_file is None:
            import psycopg2

            dsn = url.replace("postgresql+psycopg2://", "postgresql://", 1)
            self._connection = psycopg2.connect(dsn)
            self._connection.autocommit = True

    def of_process(self, files: list[str]) -> int:
        """SQLite: the process's open descriptors of the database file (its connections)."""
        return sum(1 for target in files if target == self.sqlite_file)

    def server_side(self) -> int | None:
        """PostgreSQL: connections to the database other than this counter's own."""
        if self._connection is None:
            return None
        with self._connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()")
            return int(cursor.fetchone()[0])

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()


def queue_depths(vhost: str) -> dict[str, int]:
    """Messages ready or unacknowledged in every queue of ``vhost``; empty on failure."""
    result = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost,
                             "--no-table-headers", "name", "messages"],
                            capture_output=True, text=True, timeout=60)
    depths = {}
    for line in result.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and parts[1].strip().isdigit():
            depths[parts[0]] = int(parts[1])
    return depths


class Sampler:
    """Takes a :class:`Sample` every ``interval`` seconds in a thread of its own.

    :param agents: host name to ``(pid, log path)``.
    :param vhost: the run's RabbitMQ virtual host.
    :param database: the connection counter.
    :param requests: returns how many calls the callers have made so far.
    :param started: ``time.monotonic()`` at the start of the run.
    """

    def __init__(self, agents: dict[str, tuple[int, Path]], vhost: str,
                 database: DatabaseCounter, requests: Any, started: float,
                 interval: float) -> None:
        self.agents = agents
        self.vhost = vhost
        self.database = database
        self.requests = requests
        self.started = started
        self.interval = interval
        self.samples: list[Sample] = []
        self.errors: list[str] = []

    def take(self) -> Sample:
        """Read everything once."""
        sample = Sample(at=time.monotonic() - self.started, requests=self.requests())
        for host, (pid, log) in self.agents.items():
            files = open_files(pid)
            sample.agents[host] = {
                "rss_kib": processes.resident_kib(pid), "threads": thread_count(pid),
                "open_files": len(files), "log_bytes": log.stat().st_size,
                "cpu_ms": int(processes.cpu_seconds(pid) * 1000)}
            if self.database.sqlite_file is not None:
                sample.agents[host]["db_connections"] = self.database.of_process(files)
        sample.load = os.getloadavg()[0]
        sample.db_connections = self.database.server_side()
        sample.queues = queue_depths(self.vhost)
        return sample

    def run(self, stop: threading.Event) -> None:
        """Sample until ``stop`` is set; a failed reading is kept as an error."""
        while True:
            try:
                self.samples.append(self.take())
            except Exception as error:  # noqa: BLE001 - reported with the verdicts
                self.errors.append(f"{time.monotonic() - self.started:.0f} s: {error!r}")
            if stop.wait(self.interval):
                return
