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
from typing import Any, TypeVar

import oslo_messaging as messaging
import pytest
import sqlalchemy as sa
from oslo_config import cfg

from agent import rpc
from rpcapi import CustosAPI
from tests import services
from tests.functional import databases
from tests.functional.agentproc import AgentProcess
from tests.common import NotificationRecorder, nobody
from tests.functional.canary import CANARY, RecordingClient
from tests.functional.inprocess import InProcessAgent
from tests.functional.keystone import KeystoneError, KeystoneServer, start_keystone
from tests.functional.private_services import unavailable

CONF = cfg.CONF
# An agent a test starts: a custos-agent process or one in the test process.
A = TypeVar("A", AgentProcess, InProcessAgent)

RABBIT_URL = os.environ.get("CUSTOS_TEST_RABBIT_URL", "rabbit://guest:guest@127.0.0.1:5672/")

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
        [NotificationRecorder(forward=CANARY.record_notification)], pool="custos-canary")
    listener.start()
    yield
    listener.stop()
    listener.wait()


@pytest.fixture(scope="session", autouse=True)
def log_canary(canary_listener: None) -> Iterator[None]:
    """After this session's last functional test, scan for leaks (SPEC §4).

    Every agent log line and every notification of the session is
    searched for the sensitive values the session's clients saw and for
    the agents' master keys (:mod:`tests.functional.canary`). A leak fails
    the run as an error in the teardown of the session's last test. Each
    test process (``pytest -n``) checks the agents and bus of its own.
    """
    yield
    leaks = CANARY.leaks()
    assert leaks == [], "sensitive values reached a log or notification:\n" + "\n".join(leaks)


@pytest.fixture
def notifications(notification_transport: Any) -> Iterator[NotificationRecorder]:
    """Every notification on this session's bus from now on, in a listener pool of its own."""
    recorder = NotificationRecorder()
    listener = messaging.get_notification_listener(
        notification_transport, [messaging.Target(topic=rpc.NOTIFICATION_TOPIC)], [recorder],
        pool=f"custos-test-{uuid.uuid4().hex[:8]}")
    listener.start()
    yield recorder
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


def create_database(kind: str, tmp_path: Path,
                    migrated: bool = False) -> tuple[str, Callable[[], None]]:
    """Create a database of ``kind`` (sqlite, postgresql, mysql).

    :param migrated: a copy of the session's migrated template instead
        of an empty database.
    :returns: its SQLAlchemy URL and a function that drops it.
    """
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'custos.sqlite'}"
        if migrated:
            databases.migrate(url)
        return url, lambda: None
    if kind == "postgresql":
        require("PostgreSQL", 5432)
        return databases.create_postgresql(migrated)
    if kind == "mysql":
        require("MariaDB", 3306)
        return databases.create_mysql(migrated)
    raise ValueError(kind)


@pytest.fixture(scope="session", autouse=True)
def database_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Migrate each database kind once, when first needed; drop the templates at the end."""
    databases.set_template_dir(tmp_path_factory.mktemp("templates"))
    yield
    databases.drop_templates()


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh empty database on each of SQLite, PostgreSQL and MariaDB."""
    url, drop = create_database(request.param, tmp_path)
    try:
        yield url
    finally:
        drop()


@pytest.fixture(scope="module", params=DATABASES)
def database_kind(request: pytest.FixtureRequest) -> str:
    """Each database kind, for :func:`shared_agent`.

    Module scope makes pytest run each kind's tests together, so a
    module's shared agent starts once per kind.
    """
    return str(request.param)


def _fresh_database(kind: str, tmp_path: Path) -> Iterator[str]:
    url, drop = create_database(kind, tmp_path)
    try:
        yield url
    finally:
        drop()


@pytest.fixture
def postgresql_url(tmp_path: Path) -> Iterator[str]:
    """A fresh empty PostgreSQL database."""
    yield from _fresh_database("postgresql", tmp_path)


@pytest.fixture
def mysql_url(tmp_path: Path) -> Iterator[str]:
    """A fresh empty MariaDB database."""
    yield from _fresh_database("mysql", tmp_path)


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.engine.Engine]:
    """An engine on the parametrised ``database_url``, disposed afterwards."""
    engine = sa.create_engine(database_url, future=True)
    yield engine
    engine.dispose()


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
        # Claimed contexts, as the tests written before Keystone send them;
        # tests of verified identity pass auth={"strategy": "keystone", ...}.
        "auth": {"strategy": "trusted"},
    }
    if database_url:
        sections["database"] = {"connection": database_url}
    for name, options in extra.items():
        sections.setdefault(name, {}).update(options)
    return sections


# How to stop the shared agent of the running module, while one runs.
_shared_retirers: set[Callable[[], None]] = set()


def stop_all(agents: list[AgentProcess]) -> None:
    """SIGTERM every agent first, then wait for each: their shutdowns overlap."""
    for proc in agents:
        if proc.process is not None and proc.process.poll() is None:
            proc.signal()
    for proc in agents:
        proc.stop()


def launch(workdir: Path, sections: dict[str, dict[str, Any]],
           transport: messaging.Transport) -> AgentProcess:
    """Prepare and start one custos-agent; return once it answers ``health``."""
    return launch_all([(workdir, sections)], transport)[0]


def launch_in_process(workdir: Path, sections: dict[str, dict[str, Any]],
                      transport: messaging.Transport) -> InProcessAgent:
    """Prepare and start the agent in this process; return once it answers ``health``."""
    agent = InProcessAgent(workdir, sections)
    agent.prepare()
    agent.start()
    try:
        CustosAPI(transport=transport, server=agent.host, timeout=20).health(nobody())
    except BaseException:
        agent.stop()
        raise
    return agent


def launch_all(configs: list[tuple[Path, dict[str, dict[str, Any]]]],
               transport: messaging.Transport) -> list[AgentProcess]:
    """Start one custos-agent per ``(workdir, sections)`` at once; return when all answer.

    Their start-ups overlap; if one fails, all are killed.
    """
    agents = [AgentProcess(workdir, sections) for workdir, sections in configs]
    try:
        for proc in agents:
            proc.prepare()
            proc.start()
        for proc in agents:
            proc.wait_ready(transport, nobody())
    except BaseException:
        for proc in agents:
            proc.kill()
        raise
    return agents


def client_of(api: CustosAPI, proc: AgentProcess | InProcessAgent) -> CustosAPI:
    """A client like ``api`` (canary tokens, remembered values) that calls ``proc`` only.

    Every call goes to the agent's own queue, so it reaches this agent
    even when another agent serves the topic too.
    """
    client = CustosAPI(transport=api.client.transport, server=proc.host, timeout=20)
    client.client = RecordingClient(client.client)
    return client


def _own_agent(tmp_path: Path, exchange: str, rabbit_url: str, database_url: str | None,
               host: str, state_path: Path | None,
               extra: dict[str, dict[str, Any]]) -> tuple[Path, dict[str, dict[str, Any]]]:
    """Retire the shared agents and return a test agent's directory and configuration.

    From then on the test's own agents alone serve the topic.
    """
    for retire in list(_shared_retirers):
        retire()
    workdir = tmp_path / host
    workdir.mkdir(exist_ok=True)
    return workdir, agent_sections(tmp_path, exchange, database_url, host,
                                   state_path=state_path, rabbit_url=rabbit_url, **extra)


def _starter(tmp_path: Path, exchange: str, rabbit_url: str, api: CustosAPI,
             launcher: Callable[[Path, dict[str, dict[str, Any]], messaging.Transport], A],
             agents: list[A]) -> Callable[..., A]:
    """``start(database_url=None, host='agent-1', state_path=None, **sections)``
    for a fixture: it retires the shared agents, launches one of the test's
    own with ``launcher`` and keeps it in ``agents`` for the fixture to stop.
    """

    def start(database_url: str | None = None, host: str = "agent-1",
              state_path: Path | None = None, **extra: dict[str, Any]) -> A:
        workdir, sections = _own_agent(tmp_path, exchange, rabbit_url, database_url, host,
                                       state_path, extra)
        agent = launcher(workdir, sections, api.client.transport)
        agents.append(agent)
        return agent

    return start


@pytest.fixture
def start_agent(tmp_path: Path, exchange: str, rabbit_url: str,
                api: CustosAPI) -> Iterator[Callable[..., AgentProcess]]:
    """Start real custos-agent processes; each is stopped (SIGTERM) afterwards.

    Call as ``start_agent(database_url=None, host='agent-1', **sections)``;
    it returns once the agent answers ``health``.
    """
    agents: list[AgentProcess] = []
    yield _starter(tmp_path, exchange, rabbit_url, api, launch, agents)
    stop_all(agents)


@pytest.fixture
def in_process_agent(tmp_path: Path, exchange: str, rabbit_url: str,
                     api: CustosAPI) -> Iterator[Callable[..., InProcessAgent]]:
    """Start an agent of this test's own in the test process; it is stopped afterwards.

    Called as ``start_agent`` is, for tests where the process is not the
    point; one at a time.
    """
    agents: list[InProcessAgent] = []
    yield _starter(tmp_path, exchange, rabbit_url, api, launch_in_process, agents)
    for agent in agents:
        agent.stop()


@pytest.fixture(scope="module")
def shared_agent(tmp_path_factory: pytest.TempPathFactory, exchange: str, rabbit_url: str,
                 transport: messaging.Transport,
                 canary_listener: None) -> Iterator[Callable[..., InProcessAgent]]:
    """An agent shared by the tests of one module, served in this process.

    Call as ``shared_agent(kind='sqlite', **sections)``: it returns the
    running agent when the last call asked for the same database kind
    (sqlite, postgresql, mysql) and sections; otherwise it stops that
    agent, drops its database and starts one on a fresh migrated
    database. One agent at a time serves the topic, so plain calls and
    the ``custos`` CLI reach it; tests give what they create fresh ids.
    A module-scoped parametrized fixture over the kinds makes pytest run
    each kind's tests together, so each agent starts once. ``start_agent``
    stops it first, so a test's own agents never share the topic with it.
    """
    current: dict[str, Any] = {}

    def retire() -> None:
        _shared_retirers.discard(retire)
        if current:
            try:
                if "proc" in current:
                    current["proc"].stop()
            finally:
                current.pop("drop")()
                current.clear()

    def get(kind: str = "sqlite", **extra: dict[str, Any]) -> InProcessAgent:
        key = (kind, repr(sorted(extra.items())))
        if current.get("key") != key:
            retire()
            workdir = tmp_path_factory.mktemp("shared-agent")
            url, drop = create_database(kind, workdir, migrated=True)
            current.update(key=key, drop=drop)
            host = f"shared-{kind}-{uuid.uuid4().hex[:8]}"
            sections = agent_sections(workdir, exchange, url, host, rabbit_url=rabbit_url,
                                      **extra)
            current["proc"] = launch_in_process(workdir, sections, transport)
            _shared_retirers.add(retire)
        agent: InProcessAgent = current["proc"]
        return agent

    yield get
    retire()


@pytest.fixture
def nova(rabbit_url: str) -> Iterator[services.Service]:
    """Nova's notifiers, configured as Nova configures them (tests/services.py)."""
    service = services.nova(rabbit_url)
    yield service
    service.close()


@pytest.fixture
def cinder(rabbit_url: str) -> Iterator[services.Service]:
    """Cinder's notifier, configured as Cinder configures it (tests/services.py)."""
    service = services.cinder(rabbit_url)
    yield service
    service.close()


@pytest.fixture(scope="session")
def keystone() -> Iterator[KeystoneServer]:
    """A real Keystone of this test process's own (tests/functional/keystone.py).

    Installed into .keystone-venv on first use, started once per test
    process and populated with the tests' projects and users. Tests may
    stop and start it (``keystone.outage()``); it is removed at the end.
    """
    try:
        server = start_keystone()
    except KeystoneError as error:
        unavailable(f"Keystone could not start: {error}")
        raise AssertionError("unreachable") from error
    yield server
    server.remove()
