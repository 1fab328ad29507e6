"""A RabbitMQ node and a PostgreSQL server of the fault tests' own.

Fault tests stop and start their broker and database. The machine's
RabbitMQ (5672) and PostgreSQL (5432) serve every other test run at the
same time, so these tests never touch them: each fixture here starts a
private server on free ports in a temporary directory and always removes
it afterwards.

The private RabbitMQ node runs as the ``rabbitmq`` user with the system's
Erlang cookie, so the system ``rabbitmqctl -n <node>`` controls it; it
reads none of /etc/rabbitmq (its own configuration, environment and
plugin files) so it cannot clash with the system node's ports. The
private PostgreSQL runs as the ``postgres`` user (it refuses root) with
trust authentication on 127.0.0.1.

Import the fixtures into a test module to use them::

    from tests.functional.private_services import private_rabbit  # noqa: F401
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

RABBIT_LIBEXEC = Path("/usr/lib/rabbitmq/bin")
RABBIT_HOME = Path("/var/lib/rabbitmq")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening(port: int) -> bool:
    """True when something accepts connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def unavailable(reason: str) -> None:
    """Skip on a developer's machine, fail in CI (``CI`` set)."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _owned_tempdir(prefix: str, user: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    shutil.chown(path, user, user)
    return path


@dataclasses.dataclass
class TlsFiles:
    """PEM files of a test CA and a server certificate it signed for 127.0.0.1."""

    ca: Path
    cert: Path
    key: Path


def _tls_name(common_name: str) -> Any:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(directory: Path, name: str = "custos test CA") -> tuple[Path, Any, Any]:
    """Create a CA (EC P-256, one day); return its certificate's path, certificate and key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_tls_name(name)).issuer_name(_tls_name(name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    path = directory / f"{name.replace(' ', '-')}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, cert, key


def make_tls_files(directory: Path) -> TlsFiles:
    """Create a CA and a server certificate for 127.0.0.1 and localhost under ``directory``."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ca_path, ca_cert, ca_key = make_ca(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_tls_name("127.0.0.1"))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = TlsFiles(ca=ca_path, cert=directory / "server.pem", key=directory / "server.key")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return files


class PrivateRabbit:
    """One RabbitMQ node on free ports, started with :meth:`start`.

    :param name: its node name; a unique one by default.
    :param tls: server certificate, key and CA for a TLS listener on
        :attr:`tls_port` beside the plain one; none by default.
    :ivar port: its AMQP port on 127.0.0.1.
    :ivar tls_port: its AMQP-over-TLS port on 127.0.0.1, when it has one.
    :ivar node: its Erlang node name, for ``rabbitmqctl -n``.
    """

    def __init__(self, name: str | None = None, tls: TlsFiles | None = None) -> None:
        self.port = free_port()
        self.dist_port = free_port()
        self.node = f"{name or 'custos-fault-' + uuid.uuid4().hex[:8]}@localhost"
        self.base = _owned_tempdir("custos-rabbit-", "rabbitmq")
        self.tls = tls
        self.tls_port = free_port() if tls is not None else None

    @property
    def tls_url(self) -> str:
        """Transport URL of the node's default virtual host, over TLS."""
        assert self.tls_port is not None, "this node has no TLS listener"
        return f"rabbit://guest:guest@127.0.0.1:{self.tls_port}/"

    @property
    def url(self) -> str:
        """Transport URL of the node's default virtual host."""
        return f"rabbit://guest:guest@127.0.0.1:{self.port}/"

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``rabbitmqctl -n <node> args`` and return its result."""
        return subprocess.run(["rabbitmqctl", "-q", "-n", self.node, *args],
                              capture_output=True, text=True, timeout=timeout)

    def _check(self, *args: str) -> None:
        result = self.ctl(*args)
        if result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: "
                               f"{result.stdout}{result.stderr}\n{self.log()}")

    def start(self) -> None:
        """Start the node and wait until it accepts AMQP connections."""
        self.launch()
        self.wait_started()

    def launch(self, erl_args: str = "") -> None:
        """Start the node in the background; :meth:`wait_started` waits for it.

        :param erl_args: extra arguments for the Erlang VM.
        """
        for name in ("mnesia", "log"):
            (self.base / name).mkdir()
        (self.base / "enabled_plugins").write_text("[].\n")
        # loopback_users = none: guest may connect, as on the system node.
        config = f"listeners.tcp.local = 127.0.0.1:{self.port}\nloopback_users = none\n"
        if self.tls is not None:
            for name, source in (("ca.pem", self.tls.ca), ("server.pem", self.tls.cert),
                                 ("server.key", self.tls.key)):
                shutil.copyfile(source, self.base / name)
            config += (f"listeners.ssl.local = 127.0.0.1:{self.tls_port}\n"
                       f"ssl_options.cacertfile = {self.base / 'ca.pem'}\n"
                       f"ssl_options.certfile = {self.base / 'server.pem'}\n"
                       f"ssl_options.keyfile = {self.base / 'server.key'}\n"
                       "ssl_options.verify = verify_none\n"
                       "ssl_options.fail_if_no_peer_cert = false\n")
        (self.base / "rabbitmq.conf").write_text(config)
        (self.base / "rabbitmq-env.conf").write_text("ERL_EPMD_ADDRESS=127.0.0.1\n")
        for path in self.base.iterdir():
            shutil.chown(path, "rabbitmq", "rabbitmq")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(RABBIT_HOME),
               "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),
               "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
               "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
               "RABBITMQ_NODENAME": self.node, "RABBITMQ_NODE_PORT": str(self.port),
               "RABBITMQ_DIST_PORT": str(self.dist_port),
               "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
               "RABBITMQ_LOG_BASE": str(self.base / "log"),
               "RABBITMQ_PID_FILE": str(self.base / "rabbit.pid"),
               "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}"}
        if erl_args:
            env["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"] = erl_args
        subprocess.run(["runuser", "-u", "rabbitmq", "--", "env", "-i",
                        *[f"{k}={v}" for k, v in env.items()],
                        str(RABBIT_LIBEXEC / "rabbitmq-server"), "-detached"],
                       check=True, cwd=RABBIT_HOME, timeout=60)

    def wait_started(self) -> None:
        """Wait until the launched node runs RabbitMQ and accepts AMQP connections."""
        self._check("wait", "--timeout", "60", str(self.base / "rabbit.pid"))
        self._check("await_startup")
        self.wait_listening(True)
        if self.tls_port is not None:
            self.wait_listening(True, port=self.tls_port)

    def wait_listening(self, expected: bool, timeout: float = 60,
                       port: int | None = None) -> None:
        """Wait until the AMQP port (or ``port``) is, or is no longer, accepting connections."""
        port = port or self.port
        deadline = time.monotonic() + timeout
        while listening(port) != expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"RabbitMQ port {port} still listening={not expected}")
            time.sleep(0.1)

    def stop_app(self) -> None:
        """Stop the RabbitMQ application (the Erlang node stays up)."""
        self._check("stop_app")
        self.wait_listening(False)

    def start_app(self) -> None:
        """Start the RabbitMQ application again."""
        self._check("start_app")
        self.wait_listening(True)

    def stop(self) -> None:
        """Stop the node and remove its files."""
        try:
            self.ctl("stop", timeout=60)
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-4000:]
                         for p in (self.base / "log").glob("*.log"))


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


class PrivatePostgres:
    """One PostgreSQL server on a free port, started with :meth:`start`."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.base = _owned_tempdir("custos-pg-", "postgres")
        self.data = self.base / "data"

    def _run(self, *args: str, timeout: float = 120) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True,
                       capture_output=True, timeout=timeout, cwd=self.base)

    def start(self) -> None:
        """Initialise the cluster on first use and start the server."""
        if not self.data.exists():
            self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust",
                      "-U", "postgres", "-E", "UTF8", "--no-sync")
        options = (f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c full_page_writes=off")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l",
                  str(self.base / "server.log"), "-w", "-t", "60", "-o", options, "start")

    def stop(self) -> None:
        """Stop the server at once (``-m fast``: open sessions are cut)."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
                  "stop")

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """Create an empty database; returns its SQLAlchemy URL."""
        import psycopg2

        name = f"custos_fault_{uuid.uuid4().hex[:8]}"
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres",
                                dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return self.url(name)

    def remove(self) -> None:
        """Stop the server if it runs and remove its files."""
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def private_rabbit() -> Iterator[PrivateRabbit]:
    """A RabbitMQ node of this session's own, which tests may stop and start."""
    if not (shutil.which("rabbitmqctl") and (RABBIT_LIBEXEC / "rabbitmq-server").exists()
            and shutil.which("runuser") and _user_exists("rabbitmq")):
        unavailable("a private RabbitMQ node needs rabbitmq-server, rabbitmqctl and runuser")
    node = PrivateRabbit()
    try:
        node.start()
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL server of this session's own, which tests may stop and start."""
    bindir = _pg_bin()
    if bindir is None or not shutil.which("runuser") or not _user_exists("postgres"):
        unavailable("a private PostgreSQL server needs its binaries, runuser and a postgres user")
        raise AssertionError("unreachable")
    server = PrivatePostgres(bindir)
    try:
        server.start()
        yield server
    finally:
        server.remove()


@contextlib.contextmanager
def new_vhost() -> Iterator[str]:
    """A new, empty virtual host on the shared RabbitMQ, deleted on exit; yields its URL."""
    name = f"custos-test-{uuid.uuid4().hex[:12]}"
    base = os.environ.get("CUSTOS_TEST_RABBIT_URL", "rabbit://guest:guest@127.0.0.1:5672/")
    for args in (["add_vhost", name], ["set_permissions", "-p", name, "guest", ".*", ".*", ".*"]):
        if subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True,
                          timeout=60).returncode != 0:
            unavailable(f"rabbitmqctl {args[0]} failed")
    try:
        yield base.rstrip("/") + "/" + name
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", name], capture_output=True,
                       timeout=60)


def queue_types(vhost_url: str) -> dict[str, str]:
    """``{queue name: type}`` of a virtual host, as RabbitMQ reports them."""
    listing = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p",
                              vhost_url.rsplit("/", 1)[1], "--no-table-headers", "name", "type"],
                             capture_output=True, text=True, timeout=60, check=True).stdout
    return dict(line.split("\t")[:2] for line in listing.splitlines() if "\t" in line)


@pytest.fixture
def fresh_vhost(rabbit_url: str) -> Iterator[str]:
    """The transport URL of a new, empty virtual host on the shared RabbitMQ.

    For tests whose queues must be declared differently from the session's
    (quorum queues): a queue name cannot change type within a virtual host.
    """
    with new_vhost() as url:
        yield url
