"""The agent and its callers over TLS to RabbitMQ (``[oslo_messaging_rabbit] ssl``).

A private RabbitMQ node with a TLS listener on a free loopback port,
whose certificate a CA of this module's own signed (made with the
``cryptography`` package); a real custos-agent connects to that listener
only, and a caller configured as a service would be (``ssl = true``,
``ssl_ca_file``) makes a call and a cast through ``rpcapi``. A caller that
trusts another CA does not get through.
"""

from __future__ import annotations

import functools
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import kombu.exceptions
import oslo_messaging as messaging
import pytest
from oslo_config import cfg
from oslo_messaging import opts as messaging_opts
from oslo_messaging._metrics import client as metrics_client
from oslo_messaging._tracing import client as tracing_client

from agent import rpc
from rpcapi import CustosAPI
from tests import common
from tests.common import member, member_with_service, nobody
from tests.functional.agentproc import AgentProcess
from tests.functional.conftest import agent_sections
from tests.functional.private_services import (RABBIT_LIBEXEC, PrivateRabbit, TlsFiles,
                                               _user_exists, make_ca, make_tls_files,
                                               unavailable)

eventually = functools.partial(common.eventually, timeout=30.0)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_rabbit(tls_files: TlsFiles) -> Iterator[PrivateRabbit]:
    """A RabbitMQ node of this module's own with a TLS listener beside the plain one."""
    if not (shutil.which("rabbitmqctl") and (RABBIT_LIBEXEC / "rabbitmq-server").exists()
            and shutil.which("runuser") and _user_exists("rabbitmq")):
        unavailable("a private RabbitMQ node needs rabbitmq-server, rabbitmqctl and runuser")
    node = PrivateRabbit(tls=tls_files)
    try:
        node.start()
        yield node
    finally:
        node.stop()


def tls_transport(url: str, ca_file: Path) -> messaging.Transport:
    """A caller's RPC transport with ``ssl = true`` and ``ssl_ca_file``, as a service sets them.

    On a configuration of its own, so the session's transports stay in the clear.
    """
    conf = cfg.ConfigOpts()
    # Every option oslo.messaging reads, as a service's configuration has
    # them (services use the global one, where metrics and tracing register
    # themselves on import).
    for group, options in messaging_opts.list_opts():
        conf.register_opts(options, group=group)
    conf.register_opts(metrics_client.oslo_messaging_metrics, group="oslo_messaging_metrics")
    conf.register_opts(tracing_client.oslo_messaging_tracing, group="oslo_messaging_tracing")
    conf([], project="cinder", default_config_files=[])
    transport = messaging.get_rpc_transport(conf, url=url,
                                            allowed_remote_exmods=rpc.ALLOWED_EXMODS)
    conf.set_override("ssl", True, group="oslo_messaging_rabbit")
    conf.set_override("ssl_ca_file", str(ca_file), group="oslo_messaging_rabbit")
    # One try per connection attempt: an untrusted broker is refused at once.
    conf.set_override("rabbit_retry_interval", 1, group="oslo_messaging_rabbit")
    return transport


@pytest.fixture(scope="module")
def tls_api(tls_rabbit: PrivateRabbit, tls_files: TlsFiles) -> Iterator[CustosAPI]:
    transport = tls_transport(tls_rabbit.tls_url, tls_files.ca)
    yield CustosAPI(transport=transport, timeout=20)
    transport.cleanup()


@pytest.fixture(scope="module")
def tls_agent(tls_rabbit: PrivateRabbit, tls_files: TlsFiles, tls_api: CustosAPI,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    workdir = tmp_path_factory.mktemp("tls-agent")
    sections = agent_sections(workdir, "custos", host="agent-tls",
                              rabbit_url=tls_rabbit.tls_url, auth={"strategy": "trusted"},
                              oslo_messaging_rabbit={"ssl": "true",
                                                     "ssl_ca_file": str(tls_files.ca)})
    proc = AgentProcess(workdir, sections)
    proc.prepare()
    proc.start()
    try:
        proc.wait_ready(tls_api.client.transport, nobody(), timeout=60)
        yield proc
    finally:
        proc.stop()


def connected_peers(node: PrivateRabbit) -> list[tuple[str, str]]:
    """``(user, ssl)`` of every AMQP connection the node has."""
    listing = node.ctl("list_connections", "--no-table-headers", "user", "ssl").stdout
    return [tuple(line.split("\t")[:2]) for line in listing.splitlines() if "\t" in line]


def test_a_call_and_a_cast_reach_the_agent_over_tls(tls_rabbit, tls_api, tls_agent):
    volume = str(uuid.uuid4())

    secret = tls_api.secret_generate(member(), "volume", volume)
    assert tls_api.secret_get_value(member(), secret)
    tls_api.volume_glance_metadata_set(member_with_service(), volume, {"licence": "L"})

    assert eventually(lambda: tls_api.volume_glance_metadata_get(member(), volume)
                      == {"licence": "L"})
    # Every connection to the node, the agent's and the caller's, is TLS.
    peers = connected_peers(tls_rabbit)
    assert peers and all(ssl == "true" for _, ssl in peers), peers


def test_a_caller_that_does_not_trust_the_brokers_ca_is_refused(
        tls_rabbit, tls_api, tls_agent, tmp_path):
    volume = str(uuid.uuid4())
    other_ca, _, _ = make_ca(tmp_path, "another CA")
    transport = tls_transport(tls_rabbit.tls_url, other_ca)
    try:
        api = CustosAPI(transport=transport, timeout=5)
        # A cast, with a bounded retry: a call's reply queue would be
        # declared on a connection that oslo.messaging retries for ever.
        # oslo.messaging raises kombu's error when the connection is never made.
        with pytest.raises((messaging.MessageDeliveryFailure,
                            kombu.exceptions.OperationalError)) as failure:
            api.client.prepare(retry=1).cast(member_with_service(),
                                             "volume_glance_metadata_set",
                                             volume_id=volume, metadata={"licence": "X"})
        assert "CERTIFICATE_VERIFY_FAILED" in str(failure.value)
        assert tls_api.volume_glance_metadata_get(member(), volume) == {}
    finally:
        transport.cleanup()
