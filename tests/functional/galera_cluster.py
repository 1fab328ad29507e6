"""A three-node MariaDB Galera cluster of a test module's own, on loopback.

Three private ``mariadbd`` processes run from one temporary directory,
each with its own data directory, configuration file, socket and free
loopback ports: the client port, the group communication (gcomm) port,
the incremental state transfer (IST) port and the state snapshot
transfer (SST) port. The first node's data directory is made by
``mariadb-install-db`` and it bootstraps the cluster
(``--wsrep-new-cluster``); the other two start empty and receive their
data by SST with ``rsync`` (the method that needs no database account
and copies the files while the donor stays online; ``mariabackup`` would
need a user with backup grants on every node). The machine's own
MariaDB on 3306 is never touched: every node reads only its own
``--defaults-file``.

The nodes run as the ``mysql`` user, with durability settings relaxed
(the tests kill nodes, not the machine) and failure detection shortened
so that losing a node costs seconds, not Galera's default quarter minute.

Import the fixture into a test module to use it::

    from tests.functional.galera_cluster import galera_cluster  # noqa: F401
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.functional.private_services import (_owned_tempdir, _user_exists, free_port,
                                               unavailable)

SIZE = 3
MARIADBD = Path("/usr/sbin/mariadbd")
INSTALL_DB = "mariadb-install-db"
PROVIDER_PATHS = (Path("/usr/lib/galera/libgalera_smm.so"), Path("/usr/lib/libgalera_smm.so"))
SST_METHOD = "rsync"
# A node SIGKILLed is suspected after 2 s and dropped from the primary
# component after 4 s (Galera's defaults: 5 s and 15 s).
PROVIDER_OPTIONS = ("gcache.size=32M; evs.keepalive_period=PT0.5S; evs.suspect_timeout=PT2S; "
                    "evs.inactive_timeout=PT4S; evs.install_timeout=PT4S; "
                    "evs.inactive_check_period=PT0.5S")


def _provider() -> Path | None:
    for path in PROVIDER_PATHS:
        if path.exists():
            return path
    return None


class GaleraNode:
    """One ``mariadbd`` of :class:`GaleraCluster`.

    :ivar port: its client port on 127.0.0.1.
    :ivar name: its ``wsrep_node_name``.
    """

    def __init__(self, base: Path, index: int, cluster_name: str, provider: Path) -> None:
        self.index = index
        self.name = f"galera-{index}"
        self.base = base / self.name
        self.data = self.base / "data"
        self.port = free_port()
        self.gcomm_port = free_port()
        self.ist_port = free_port()
        self.sst_port = free_port()
        self.cluster_name = cluster_name
        self.provider = provider
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.base / "my.cnf"

    @property
    def log_path(self) -> Path:
        return self.base / "error.log"

    def write_config(self, peers: list["GaleraNode"]) -> None:
        """Write the node's ``my.cnf``, naming every node's gcomm port."""
        self.base.mkdir(exist_ok=True)
        self.data.mkdir(exist_ok=True)
        addresses = ",".join(f"127.0.0.1:{peer.gcomm_port}" for peer in peers)
        options = (f"gmcast.listen_addr=tcp://127.0.0.1:{self.gcomm_port}; "
                   f"ist.recv_addr=127.0.0.1:{self.ist_port}; {PROVIDER_OPTIONS}")
        self.config.write_text(f"""[mysqld]
user = mysql
datadir = {self.data}
socket = {self.base / 'mysqld.sock'}
pid-file = {self.base / 'mysqld.pid'}
log-error = {self.log_path}
port = {self.port}
bind-address = 127.0.0.1
skip-name-resolve
performance_schema = OFF
max_connections = 200
innodb_buffer_pool_size = 32M
innodb_log_file_size = 8M
innodb_flush_log_at_trx_commit = 2
innodb_autoinc_lock_mode = 2
binlog_format = ROW
default_storage_engine = InnoDB
character_set_server = utf8mb4
collation_server = utf8mb4_general_ci
wsrep_on = ON
wsrep_provider = {self.provider}
wsrep_cluster_name = {self.cluster_name}
wsrep_cluster_address = gcomm://{addresses}
wsrep_node_name = {self.name}
wsrep_node_address = 127.0.0.1:{self.gcomm_port}
wsrep_node_incoming_address = 127.0.0.1:{self.port}
wsrep_provider_options = "{options}"
wsrep_sst_method = {SST_METHOD}
wsrep_sst_receive_address = 127.0.0.1:{self.sst_port}
""")
        for path in (self.base, self.data, self.config):
            shutil.chown(path, "mysql", "mysql")

    def install(self) -> None:
        """Create the system tables in the (empty) data directory."""
        subprocess.run([INSTALL_DB, f"--defaults-file={self.config}", "--user=mysql",
                        "--auth-root-authentication-method=normal", "--skip-test-db",
                        "--wsrep-on=OFF"],
                       check=True, capture_output=True, timeout=120)

    def launch(self, new_cluster: bool = False) -> None:
        """Start ``mariadbd`` in the background; :meth:`wait_synced` waits for it."""
        command = [str(MARIADBD), f"--defaults-file={self.config}"]
        if new_cluster:
            command.append("--wsrep-new-cluster")
        with open(self.base / "stdout.log", "ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                            cwd=self.base)

    def alive(self) -> bool:
        """True while the node's process runs."""
        return self.process is not None and self.process.poll() is None

    def connect(self, **kwargs: Any) -> Any:
        """A PyMySQL connection to this node as ``root`` (autocommit)."""
        import pymysql

        return pymysql.connect(host="127.0.0.1", port=self.port, user="root", password="",
                               autocommit=True, connect_timeout=2, **kwargs)

    def status(self, name: str) -> str | None:
        """A ``wsrep_%`` status variable of this node, or None when it cannot answer."""
        import pymysql

        try:
            conn = self.connect()
        except pymysql.MySQLError:
            return None
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW GLOBAL STATUS LIKE %s", (name,))
                row = cur.fetchone()
        except pymysql.MySQLError:
            return None
        finally:
            conn.close()
        return None if row is None else str(row[1])

    def wait_synced(self, timeout: float = 120) -> None:
        """Wait until the node is a synced member of the primary component."""
        deadline = time.monotonic() + timeout
        while self.status("wsrep_local_state_comment") != "Synced":
            if not self.alive():
                raise RuntimeError(f"{self.name} exited:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} never synced:\n{self.log()}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the node and wait for its process to end."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self, timeout: float = 60) -> None:
        """Shut the node down cleanly (SIGTERM); SIGKILL it if it will not stop."""
        if not self.alive():
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def log(self) -> str:
        """The end of the node's error log."""
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except FileNotFoundError:
            return ""


class GaleraCluster:
    """Three :class:`GaleraNode` forming one cluster (:meth:`start`).

    :ivar nodes: the nodes; the first bootstrapped the cluster.
    :ivar started_in: seconds :meth:`start` took.
    """

    def __init__(self, provider: Path) -> None:
        self.base = _owned_tempdir("custos-galera-", "mysql")
        name = f"custos-{uuid.uuid4().hex[:8]}"
        self.nodes = [GaleraNode(self.base, i, name, provider) for i in range(1, SIZE + 1)]
        self.started_in = 0.0

    def start(self) -> None:
        """Bootstrap the first node, then let the other two join it.

        They join one after the other: a donor serves one state transfer
        at a time, and a second joiner would only wait and retry.
        """
        began = time.monotonic()
        for node in self.nodes:
            node.write_config(self.nodes)
        seed = self.nodes[0]
        seed.install()
        seed.launch(new_cluster=True)
        seed.wait_synced()
        for node in self.nodes[1:]:
            node.launch()
            node.wait_synced()
        size = seed.status("wsrep_cluster_size")
        if size != str(SIZE):
            raise RuntimeError(f"cluster formed with {size} nodes")
        self.started_in = time.monotonic() - began

    def url(self, node: GaleraNode, database: str) -> str:
        """SQLAlchemy URL of ``database`` on ``node``."""
        return f"mysql+pymysql://root@127.0.0.1:{node.port}/{database}?charset=utf8mb4"

    def create_database(self) -> str:
        """Create an empty database (the server's default collation); returns its name."""
        name = f"custos_galera_{uuid.uuid4().hex[:8]}"
        conn = self.nodes[0].connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE `{name}`")
        finally:
            conn.close()
        return name

    def restart(self, node: GaleraNode) -> None:
        """Start a stopped or killed node again and wait until it is synced (IST)."""
        node.launch()
        node.wait_synced()

    def stop(self) -> None:
        """Kill every node and remove their files.

        SIGKILL: their data goes with them, and a clean shutdown of each
        node in turn (leaving the cluster, flushing InnoDB) cost seconds.
        """
        try:
            for node in self.nodes:
                if node.alive():
                    assert node.process is not None
                    node.process.send_signal(signal.SIGKILL)
            for node in self.nodes:
                node.kill()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


def _installed() -> Path | None:
    provider = _provider()
    if (provider is None or not MARIADBD.exists() or not shutil.which(INSTALL_DB)
            or not shutil.which(SST_METHOD) or not shutil.which(f"wsrep_sst_{SST_METHOD}")
            or not _user_exists("mysql") or os.geteuid() != 0):
        return None
    return provider


@pytest.fixture(scope="module")
def galera_cluster() -> Iterator[GaleraCluster]:
    """A three-node MariaDB Galera cluster of this test module's own."""
    provider = _installed()
    if provider is None:
        unavailable("a Galera cluster needs mariadbd, galera-4's provider, "
                    "mariadb-install-db, rsync and root (to run the nodes as mysql)")
        raise AssertionError("unreachable")
    cluster = GaleraCluster(provider)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
