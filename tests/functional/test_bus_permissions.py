"""The README's RabbitMQ permission layout, built on the real broker and tried from both sides.

A virtual host and users of this module's own are created with
rabbitmqctl, and the ``rabbitmqctl`` lines of the README's "The bus is a
boundary" section are run as they stand there (only the virtual host and
user names are made unique). Then a real custos-agent runs as the
``custos`` user, Cinder and Nova call it and send their notifications as
theirs, and each caller tries what the layout must refuse with plain AMQP
(py-amqp, as kombu uses it): binding a queue to ``custos``, reading a
``custos-agent`` queue, publishing to ``custos`` with another routing key.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import secrets
import shlex
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import amqp
import oslo_messaging as messaging
import pytest

from agent import rpc
from rpcapi import CustosAPI
from tests import common, services
from tests.common import log_lines, member, member_with_service, nobody
from tests.functional.agentproc import AgentProcess
from tests.functional.conftest import agent_sections, require
from tests.functional.private_services import unavailable

README = Path(__file__).resolve().parents[2] / "README.rst"
ROLES = ("custos", "cinder", "nova", "custos-reader")
HEX_TO_LETTERS = str.maketrans("0123456789", "ghijklmnop")

eventually = functools.partial(common.eventually, timeout=60.0)


def readme_commands() -> list[list[str]]:
    """The arguments of every ``rabbitmqctl`` line of the README's bus section."""
    text = README.read_text()
    section = text.split("The bus is a boundary\n", 1)[1].split("\nUpgrading\n", 1)[0]
    return [shlex.split(line)[1:] for line in section.splitlines()
            if line.startswith("    rabbitmqctl ")]


def rabbitmqctl(*args: str) -> None:
    result = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True,
                            timeout=60)
    if result.returncode != 0:
        # The arguments hold no password: add_user reads it from stdin.
        raise AssertionError(f"rabbitmqctl {args[0]} failed: {result.stderr}")


@dataclasses.dataclass
class Layout:
    """The module's virtual host and one user per role of the README."""

    vhost: str
    users: dict[str, tuple[str, str]]  # role: (user name, password)

    def url(self, role: str) -> str:
        name, password = self.users[role]
        return f"rabbit://{name}:{password}@127.0.0.1:5672/{self.vhost}"

    def connect(self, role: str, **options: Any) -> amqp.Connection:
        """A plain AMQP connection as ``role``'s user."""
        name, password = self.users[role]
        connection = amqp.Connection(host="127.0.0.1:5672", userid=name, password=password,
                                     virtual_host=self.vhost, **options)
        connection.connect()
        return connection


@pytest.fixture(scope="module")
def layout() -> Iterator[Layout]:
    require("RabbitMQ", 5672)
    commands = readme_commands()
    assert len(commands) == 6, commands
    tag = uuid.uuid4().hex[:8]
    built = Layout(vhost=f"custos-perm-{tag}",
                   users={role: (f"{role}-{tag}", secrets.token_hex(16)) for role in ROLES})
    try:
        subprocess.run(["rabbitmqctl", "-q", "add_vhost", built.vhost], check=True,
                       capture_output=True, timeout=60)
    except (OSError, subprocess.CalledProcessError):
        unavailable("rabbitmqctl cannot create a virtual host here")
    try:
        for name, password in built.users.values():
            result = subprocess.run(["rabbitmqctl", "-q", "add_user", name], input=password,
                                    capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, result.stderr
        for command in commands:
            action, flag, _, role, *rest = command
            assert flag == "-p" and role in built.users, command
            rabbitmqctl(action, "-p", built.vhost, built.users[role][0], *rest)
        yield built
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", built.vhost],
                       capture_output=True, timeout=60)
        for name, _ in built.users.values():
            subprocess.run(["rabbitmqctl", "-q", "delete_user", name], capture_output=True,
                           timeout=60)


def caller_transport(layout: Layout, role: str) -> messaging.Transport:
    """An RPC transport as ``role``'s user; ``CustosAPI`` names exchange ``custos`` itself."""
    return messaging.get_rpc_transport(rpc.CONF, url=layout.url(role),
                                       allowed_remote_exmods=rpc.ALLOWED_EXMODS)


@pytest.fixture(scope="module")
def callers(layout: Layout, transport: messaging.Transport) -> Iterator[dict[str, CustosAPI]]:
    """Cinder's and Nova's clients, on the global configuration the session set up."""
    transports = {role: caller_transport(layout, role) for role in ("cinder", "nova")}
    yield {role: CustosAPI(transport=transport, timeout=20)
           for role, transport in transports.items()}
    for transport in transports.values():
        transport.cleanup()


@pytest.fixture(scope="module")
def agent(layout: Layout, callers: dict[str, CustosAPI],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    workdir = tmp_path_factory.mktemp("bus-agent")
    sections = agent_sections(workdir, "custos", host="agent-perm",
                              rabbit_url=layout.url("custos"), auth={"strategy": "trusted"})
    proc = AgentProcess(workdir, sections)
    proc.prepare()
    proc.start()
    try:
        proc.wait_ready(callers["cinder"].client.transport, nobody(), timeout=60)
        yield proc
    finally:
        proc.stop()


def refused(attempt: Callable[[amqp.Channel], Any], connection: amqp.Connection) -> bool:
    """True when the broker answers ``attempt`` on a fresh channel with ACCESS_REFUSED."""
    channel = connection.channel()
    try:
        attempt(channel)
    except amqp.exceptions.AccessRefused:
        return True
    channel.close()
    return False


def test_a_callers_user_cannot_bind_read_or_publish_past_the_layout(layout, agent):
    for role in ("cinder", "nova"):
        with layout.connect(role, confirm_publish=True) as connection:
            # A queue the caller may declare and bind (to its own exchange):
            # only the read permission on custos stands in the way.
            sniffer = f"notifications.sniff{uuid.uuid4().hex[:8].translate(HEX_TO_LETTERS)}"
            channel = connection.channel()
            channel.queue_declare(sniffer, auto_delete=True)
            channel.queue_bind(sniffer, role, "sniff")
            channel.close()

            for key in ("custos-agent", "#", "custos-agent.agent-perm", "notifications.info"):
                assert refused(lambda ch: ch.queue_bind(sniffer, "custos", key), connection), key
            for queue in ("custos-agent", "custos-agent.agent-perm", "custos-agent-events",
                          "notifications.info"):
                assert refused(lambda ch: ch.basic_get(queue), connection), queue
            # Forging custos' own notifications or feeding its event queue.
            for key in ("notifications.info", "custos-agent-events", "custos-agent.#"):
                assert refused(lambda ch: ch.basic_publish(
                    amqp.Message("{}"), exchange="custos", routing_key=key), connection), key
            # Nor around the exchange: straight into the agents' queue.
            assert refused(lambda ch: ch.basic_publish(
                amqp.Message("{}"), exchange="", routing_key="custos-agent"), connection)

    # custos' own user may bind to its exchange.
    with layout.connect("custos") as connection:
        channel = connection.channel()
        channel.queue_declare("custos-agent-probe", auto_delete=True)
        channel.queue_bind("custos-agent-probe", "custos", "custos-agent")
        channel.close()


def read_notifications(layout: Layout, event_type: str) -> list[dict[str, Any]]:
    """Take the custos notifications of ``event_type`` waiting for the reader."""
    found = []
    with layout.connect("custos-reader") as connection:
        channel = connection.channel()
        while (message := channel.basic_get("notifications.info", no_ack=True)) is not None:
            body = json.loads(json.loads(message.body)["oslo.message"])
            if body["event_type"] == event_type:
                found.append(body)
    return found


def test_custos_serves_every_caller_kind_under_the_layout(layout, agent, callers):
    cinder_api, nova_api = callers["cinder"], callers["nova"]
    volume, vm = str(uuid.uuid4()), str(uuid.uuid4())

    # Calls and casts, from both services.
    passphrase = cinder_api.secret_generate(member(), "volume", volume)
    assert cinder_api.secret_get_value(member(), passphrase)
    cinder_api.volume_glance_metadata_set(member_with_service(), volume, {"licence": "L"})
    assert eventually(lambda: cinder_api.volume_glance_metadata_get(member(), volume)
                      == {"licence": "L"})
    assert passphrase in [s["uuid"] for s in nova_api.secret_list(member())]
    nova_api.instance_boot_roles_set(member_with_service(), vm, ["member"])

    # Notifications out, to the reader the layout allows.
    assert eventually(lambda: [n for n in read_notifications(layout, "secret.define")
                               if n["payload"]["uuid"] == passphrase])

    # Events in, from each service's own exchange, as its own user.
    cinder = services.cinder(layout.url("cinder"))
    nova = services.nova(layout.url("nova"))
    try:
        services.delete_volume(cinder, volume, "legacy")
        services.delete_instance(nova, vm, "versioned")
        assert eventually(lambda: log_lines(agent, f"Volume {volume} deleted: purged 1 glance "
                                                   "metadata key(s) and 1 generated"))
        assert eventually(lambda: log_lines(agent, f"Instance {vm} deleted: purged 1 boot"))
    finally:
        cinder.close()
        nova.close()
    assert not log_lines(agent, "ACCESS_REFUSED"), agent.log()
