"""Functional fixtures: the real RabbitMQ, PostgreSQL and MariaDB on 127.0.0.1.

Each test session uses a RabbitMQ virtual host of its own (queue names
are global within a virtual host, whatever the exchange, so an exchange
alone would not keep two concurrent runs apart) and each database test a
freshly created database, so runs never see each other's messages or
rows. A service that is not running skips its tests on a
developer's machine and fails them in CI (``CI`` set), where .ci/run
starts every service first.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import oslo_messaging as messaging
import pytest
from oslo_config import cfg

from agent import rpc
from rpcapi import CustosAPI
from tests.functional.agentproc import AgentProcess
from tests.functional.canary import NotificationRecorder, RecordingClient

CONF = cfg.CONF

RABBIT_URL = os.environ.get("CUSTOS_TEST_RABBIT_URL", "rabbit://guest:guest@127.0.0.1:5672/")
PG_ADMIN = dict(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
MYSQL_ADMIN = dict(host="127.0.0.1", port=3306, user="root", password="")

DATABASES = ["sqlite", "postgresql", "mysql"]


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def require(service: str, port: int) -> None:
    """Skip (developer machine) or fail (CI) when ``service`` is not listening."""
    if _listening(port):
        return
    message = f"{service} is not listening on 127.0.0.1:{port}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI starts it in .ci/run)")
    pytest.skip(message)


_session_rabbit_url = RABBIT_URL


def _rabbitmqctl(*args: str) -> bool:
    if not shutil.which("rabbitmqctl"):
        return False
    result = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, timeout=60)
    return result.returncode == 0


@pytest.fixture(scope="session")
def exchange() -> str:
    """A control exchange (and virtual host name) of this test session's own."""
    return f"custos-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def rabbit_url(exchange: str) -> Iterator[str]:
    """The transport URL of this session's own RabbitMQ virtual host.

    Falls back to the default virtual host when rabbitmqctl cannot create
    one (a broker on another machine); runs then share queue names.
    """
    global _session_rabbit_url
    require("RabbitMQ", 5672)
    if _rabbitmqctl("add_vhost", exchange) and _rabbitmqctl(
            "set_permissions", "-p", exchange, "guest", ".*", ".*", ".*"):
        _session_rabbit_url = RABBIT_URL.rstrip("/") + "/" + exchange
        yield _session_rabbit_url
        _rabbitmqctl("delete_vhost", exchange)
    else:
        yield RABBIT_URL
    _session_rabbit_url = RABBIT_URL


@pytest.fixture(scope="session")
def transport(exchange: str, rabbit_url: str) -> Iterator[messaging.Transport]:
    """An RPC transport on the real RabbitMQ, in this session's virtual host."""
    rpc.register_opts(CONF)
    CONF([], project="custos", default_config_files=[])
    CONF.set_override("control_exchange", exchange)
    transport = messaging.get_rpc_transport(CONF, url=rabbit_url,
                                            allowed_remote_exmods=rpc.ALLOWED_EXMODS)
    yield transport
    transport.cleanup()


@pytest.fixture(scope="session")
def notification_transport(rabbit_url: str, transport: messaging.Transport) -> Iterator[Any]:
    """A notification transport in the same virtual host, for listeners in tests."""
    notification = messaging.get_notification_transport(CONF, url=rabbit_url)
    yield notification
    notification.cleanup()


@pytest.fixture(scope="session")
def canary_listener(notification_transport: Any) -> Iterator[None]:
    """Hand every notification of the session to the log canary (tests/functional/canary.py)."""
    listener = messaging.get_notification_listener(
        notification_transport, [messaging.Target(topic="notifications")],
        [NotificationRecorder()], pool="custos-canary")
    listener.start()
    yield
    listener.stop()
    listener.wait()


@pytest.fixture
def api(transport: messaging.Transport, canary_listener: None) -> CustosAPI:
    """A client of every agent on this session's exchange.

    Its calls carry the canary tokens and it remembers the secret values
    and CHAP passwords it sees, for the log canary.
    """
    client = CustosAPI(transport=transport, timeout=20)
    client.client = RecordingClient(client.client)
    return client


def _create_postgresql() -> tuple[str, Callable[[], None]]:
    import psycopg2

    require("PostgreSQL", 5432)
    name = f"custos_test_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(**PG_ADMIN)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()

    def drop() -> None:
        conn = psycopg2.connect(**PG_ADMIN)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()

    return f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}", drop


def _create_mysql() -> tuple[str, Callable[[], None]]:
    import pymysql

    require("MariaDB", 3306)
    name = f"custos_test_{uuid.uuid4().hex[:12]}"
    conn = pymysql.connect(**MYSQL_ADMIN)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    conn.close()

    def drop() -> None:
        conn = pymysql.connect(**MYSQL_ADMIN)
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()

    return f"mysql+pymysql://root@127.0.0.1:3306/{name}?charset=utf8mb4", drop


def create_database(kind: str, tmp_path: Path) -> tuple[str, Callable[[], None]]:
    """Create an empty database of ``kind`` (sqlite, postgresql, mysql).

    :returns: its SQLAlchemy URL and a function that drops it.
    """
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'custos.sqlite'}", lambda: None
    if kind == "postgresql":
        return _create_postgresql()
    if kind == "mysql":
        return _create_mysql()
    raise ValueError(kind)


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh empty database on each of SQLite, PostgreSQL and MariaDB."""
    url, drop = create_database(request.param, tmp_path)
    try:
        yield url
    finally:
        drop()


@pytest.fixture
def postgresql_url(tmp_path: Path) -> Iterator[str]:
    """A fresh empty PostgreSQL database."""
    url, drop = create_database("postgresql", tmp_path)
    try:
        yield url
    finally:
        drop()


def agent_sections(tmp_path: Path, exchange: str, database_url: str | None = None,
                   host: str = "agent-1", state_path: Path | None = None,
                   rabbit_url: str | None = None,
                   **extra: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Configuration of one test agent; ``extra`` adds or replaces sections.

    ``rabbit_url`` defaults to this session's virtual host.
    """
    state = state_path or tmp_path / "state"
    sections: dict[str, dict[str, Any]] = {
        "DEFAULT": {"host": host, "state_path": str(state),
                    "transport_url": rabbit_url or _session_rabbit_url,
                    "control_exchange": exchange, "debug": "true",
                    "graceful_shutdown_timeout": 20},
        "oslo_messaging_rabbit": {"rabbit_retry_interval": 1},
    }
    if database_url:
        sections["database"] = {"connection": database_url}
    for name, options in extra.items():
        sections.setdefault(name, {}).update(options)
    return sections


@pytest.fixture
def start_agent(tmp_path: Path, exchange: str, rabbit_url: str,
                api: CustosAPI) -> Iterator[Callable[..., AgentProcess]]:
    """Start real custos-agent processes; each is stopped (SIGTERM) afterwards.

    Call as ``start_agent(database_url=None, host='agent-1', **sections)``;
    it returns once the agent answers ``health``.
    """
    from tests.common import nobody

    agents: list[AgentProcess] = []

    def start(database_url: str | None = None, host: str = "agent-1",
              state_path: Path | None = None, **extra: dict[str, Any]) -> AgentProcess:
        workdir = tmp_path / host
        workdir.mkdir(exist_ok=True)
        sections = agent_sections(tmp_path, exchange, database_url, host,
                                  state_path=state_path, rabbit_url=rabbit_url, **extra)
        proc = AgentProcess(workdir, sections)
        proc.prepare()
        proc.start()
        agents.append(proc)
        proc.wait_ready(api.client.transport, nobody())
        return proc

    yield start
    for proc in agents:
        proc.stop()
