"""The client side: what rpcapi and the custos CLI load, address and send.

A service that imports :mod:`rpcapi` (cinder-volume, nova-api) must get
no database, cryptography, policy or driver code with it, and its own
oslo.messaging defaults must stay its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import oslo_messaging as messaging
import pytest
from oslo_config import cfg

from agent import exception, wire
from rpcapi import RPC_API_VERSION, CustosAPI
from rpcapi import base as rpcapi_base
from tests.common import admin, member
from tests.conftest import REPO_ROOT

# Server-side modules and the heavy libraries they bring.
FORBIDDEN = ("sqlalchemy", "alembic", "cryptography", "oslo_policy", "defusedxml",
             "keystoneauth1", "requests", "db")
# The only custos modules the client may load.
CLIENT_MODULES = ("agent", "agent.exception", "agent.wire", "agent.cmd", "agent.cmd.client",
                  "agent.cmd.output",
                  "agent.cmd.commands")


def _modules_after(statement: str, env: dict[str, str] | None = None) -> set[str]:
    """Run ``statement`` in a fresh interpreter; return the names in sys.modules."""
    code = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True,
                            capture_output=True, text=True, env={**os.environ, **(env or {})},
                            timeout=120)
    return set(json.loads(result.stdout.splitlines()[-1]))


def _server_side(modules: set[str]) -> list[str]:
    heavy = [m for m in modules if m.split(".")[0] in FORBIDDEN]
    custos = [m for m in modules
              if m.split(".")[0] == "agent" and m not in CLIENT_MODULES
              and not m.startswith("agent.cmd.commands.")]
    return sorted(heavy + custos)


def test_the_cli_loads_no_server_module():
    modules = _modules_after("import agent.cmd.client")

    assert "rpcapi.client" in modules and "agent.wire" in modules
    # The CLI authenticates as the openstack client does, with keystoneauth1.
    assert _server_side(modules - {m for m in modules
                                   if m.split(".")[0] in ("keystoneauth1", "requests")}) == []


def test_rpcapi_loads_no_server_module():
    # eventlet's resolver (imported by oslo.messaging itself) pulls in
    # cryptography through dnspython; the CLI switches it off, a service
    # has its own eventlet set-up. What custos adds is what is checked.
    modules = _modules_after("import rpcapi", env={"EVENTLET_NO_GREENDNS": "yes"})

    assert _server_side(modules) == []


def test_importing_agent_loads_nothing_but_the_standard_library():
    modules = _modules_after("import agent")

    assert not [m for m in modules if m.split(".")[0] in (
        "oslo_config", "oslo_messaging", "oslo_context", "oslo_log", *FORBIDDEN)]


@pytest.fixture
def cinder_defaults(conf):
    """The process configured as cinder-volume configures oslo.messaging."""
    messaging.set_transport_defaults(control_exchange="cinder")
    conf.set_override("transport_url", "fake:/")
    try:
        yield conf
    finally:
        rpcapi_base.cleanup_default_transport()
        messaging.set_transport_defaults(control_exchange=wire.EXCHANGE)


def test_building_the_client_on_a_given_transport_keeps_the_callers_exchange(cinder_defaults):
    transport = messaging.get_rpc_transport(cinder_defaults,
                                            allowed_remote_exmods=wire.ALLOWED_EXMODS)
    try:
        api = CustosAPI(transport=transport)

        assert cfg.CONF.control_exchange == "cinder"
        assert api.client.target.exchange == "custos"
        assert api.client.target.topic == "custos-agent"
    finally:
        transport.cleanup()


def test_building_the_client_without_a_transport_keeps_the_callers_exchange(cinder_defaults):
    api = CustosAPI()
    CustosAPI()

    assert cfg.CONF.control_exchange == "cinder"
    assert api.client.target.exchange == "custos"
    assert api.client.transport is rpcapi_base.default_transport()


def test_the_agent_answers_callers_of_every_version_it_speaks(harness):
    for version in ("1.0", RPC_API_VERSION):
        reply = harness.api.client.prepare(version=version).call(member(), "health")
        assert reply["rpc_api_version"] == RPC_API_VERSION == "1.1"


def test_the_agent_refuses_a_version_it_does_not_speak(harness):
    with pytest.raises((messaging.UnsupportedVersion, messaging.RemoteError)):
        harness.api.client.prepare(version="1.2").call(member(), "health")


def test_a_client_capped_at_1_0_still_calls_1_0_methods(harness):
    capped = CustosAPI(transport=harness.api.client.transport, version_cap="1.0", timeout=10)

    assert capped.health(member())["database"] == "ok"
    with pytest.raises(exception.SecretNotFound):
        capped.secret_lookup_by_usage(member(), "ceph", f"client.{uuid.uuid4().hex}")


def _lonely_client(conf, **options):
    """A client on a fake bus no agent listens on: anything sent would time out."""
    conf.set_override("transport_url", "fake:/")
    transport = messaging.get_rpc_transport(conf, allowed_remote_exmods=wire.ALLOWED_EXMODS)
    return transport, CustosAPI(transport=transport, timeout=2, **options)


def test_a_capped_client_refuses_a_1_1_method_without_sending_it(conf):
    transport, capped = _lonely_client(conf, version_cap="1.0")
    try:
        with pytest.raises(exception.RPCVersionCapped) as caught:
            capped.secret_lookup_by_usage(admin(), "ceph", "client.cinder",
                                          project_id=uuid.uuid4().hex)
    finally:
        transport.cleanup()

    assert caught.value.code == "rpc_version_capped"
    assert "secret_lookup_by_usage" in caught.value.msg
    assert "1.1" in caught.value.msg and "1.0" in caught.value.msg
    assert not capped.can_send_version("1.1")


def test_a_capped_client_sends_no_project_for_glance_metadata(conf):
    transport, capped = _lonely_client(conf, version_cap="1.0")
    try:
        with pytest.raises(exception.RPCVersionCapped) as caught:
            capped.volume_glance_metadata_get(admin(), str(uuid.uuid4()),
                                              project_id=uuid.uuid4().hex)
    finally:
        transport.cleanup()

    assert "volume_glance_metadata_get" in caught.value.msg


def test_the_version_cap_comes_from_upgrade_levels(conf):
    rpcapi_base.register_opts(conf)
    conf.set_override("custos", "1.0", group="upgrade_levels")
    transport, capped = _lonely_client(conf)
    try:
        with pytest.raises(exception.RPCVersionCapped):
            capped.secret_lookup_by_usage(admin(), "ceph", "client.cinder",
                                          project_id=uuid.uuid4().hex)
    finally:
        transport.cleanup()

    assert capped.can_send_version("1.0")


def test_an_uncapped_client_sends_1_1(conf):
    transport, api = _lonely_client(conf)
    try:
        # Sent (nobody answers on this bus), so it times out instead of
        # being refused on the client side.
        with pytest.raises(messaging.MessagingTimeout):
            api.secret_lookup_by_usage(admin(), "ceph", "client.cinder",
                                       project_id=uuid.uuid4().hex)
    finally:
        transport.cleanup()


def test_the_agents_start_up_puts_its_notifications_on_exchange_custos(tmp_path):
    code = ("from oslo_config import cfg\n"
            "from agent.cmd import common\n"
            "common.parse_args([], name='custos-agent', default_config_files=[])\n"
            "print(cfg.CONF.control_exchange)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True,
                            capture_output=True, text=True, timeout=120)

    assert result.stdout.split() == ["custos"]


def test_configuration_knows_nothing_of_logging_or_the_bus_set_up():
    modules = _modules_after("import agent.conf, agent.conf.opts")

    assert "agent.log" not in modules and "agent.rpc" not in modules
