"""custos as castellan's key manager, against a real agent over RabbitMQ.

castellan ships reusable functional test cases for any key manager
(``KeyManagerTestCase``) and, for Barbican, behaviour tests of contexts,
unknown objects and consumers (``BarbicanKeyManagerTestCase``).  They run
here unchanged, subclassed with custos' backend, the context a service
hands castellan (a plain oslo.context ``RequestContext``) and one agent
on PostgreSQL shared by the module.  Last, a process configured as
cinder-volume is (its own ``control_exchange``, ``[key_manager] backend =
custos``) creates, reads and deletes a volume key through
``castellan.key_manager.API``.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import textwrap
import unittest
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from castellan.tests.functional.key_manager import test_barbican_key_manager
from castellan.tests.functional.key_manager import test_key_manager
from oslo_config import cfg
from oslo_context import context as oslo_context
from oslotest import base

from rpcapi import key_manager
from tests.common import PROJECT, nobody
from tests.functional.agentproc import AgentProcess, run_script, write_config
from tests.functional.conftest import agent_sections, create_database

CONF = cfg.CONF


@pytest.fixture(scope="module")
def key_agent(tmp_path_factory: pytest.TempPathFactory, exchange: str, rabbit_url: str,
              transport) -> Iterator[AgentProcess]:
    """One custos-agent on PostgreSQL for the whole module."""
    workdir = tmp_path_factory.mktemp("castellan")
    url, drop = create_database("postgresql", workdir)
    proc = AgentProcess(workdir, agent_sections(workdir, exchange, url, host="agent-keys",
                                                rabbit_url=rabbit_url))
    proc.prepare()
    proc.start()
    try:
        proc.wait_ready(transport, nobody())
        yield proc
    finally:
        proc.stop()
        drop()


@pytest.fixture(scope="module")
def backend_conf(key_agent: AgentProcess, rabbit_url: str) -> Iterator[cfg.ConfigOpts]:
    """The test process's CONF as a service's: ``[custos] transport_url`` set."""
    CONF.register_opts(key_manager.OPTS, group=key_manager.GROUP)
    CONF.set_override("transport_url", rabbit_url, group=key_manager.GROUP)
    try:
        yield CONF
    finally:
        key_manager.cleanup()
        CONF.clear_override("transport_url", group=key_manager.GROUP)


def _service_context(project_id: str = PROJECT) -> oslo_context.RequestContext:
    """The context a service (cinder-api, nova-compute) passes castellan."""
    return oslo_context.RequestContext(project_id=project_id, user_id=uuid.uuid4().hex,
                                       roles=["member"], auth_token="gAAAAB-test-token")


@pytest.mark.usefixtures("backend_conf")
class CustosKeyManagerTestCase(test_key_manager.KeyManagerTestCase, base.BaseTestCase):
    """castellan's test cases for every key manager."""

    def _create_key_manager(self) -> key_manager.CustosKeyManager:
        return key_manager.CustosKeyManager(CONF)

    def setUp(self) -> None:
        super().setUp()
        self.ctxt = _service_context()


# castellan's Barbican cases that assert python-barbicanclient's own
# TypeError text for a consumer missing a field; custos refuses such a
# consumer with KeyManagerError, as for any other bad argument.
_BARBICANCLIENT_MESSAGES = ("test_consumer_add_missing_positional_arguments",
                            "test_consumer_remove_missing_positional_arguments")


@pytest.mark.usefixtures("backend_conf")
class CustosBarbicanBehaviourTestCase(test_barbican_key_manager.BarbicanKeyManagerTestCase,
                                      base.BaseTestCase):
    """castellan's behaviour tests for Barbican: contexts, unknown objects, consumers."""

    def _create_key_manager(self) -> key_manager.CustosKeyManager:
        return key_manager.CustosKeyManager(CONF)

    def get_context(self) -> oslo_context.RequestContext:
        return _service_context()

    def setUp(self) -> None:
        # Barbican's own setUp builds a python-barbicanclient and skips
        # without one; castellan's common setUp is all custos needs.
        super(test_barbican_key_manager.BarbicanKeyManagerTestCase, self).setUp()
        self.ctxt = self.get_context()


for _name in dir(CustosBarbicanBehaviourTestCase):
    if _name.startswith(_BARBICANCLIENT_MESSAGES):
        setattr(CustosBarbicanBehaviourTestCase, _name, unittest.skip(
            "asserts python-barbicanclient's own message")(
                getattr(CustosBarbicanBehaviourTestCase, _name)))


CINDER_VOLUME = textwrap.dedent("""
    import json, sys
    import oslo_messaging as messaging
    from castellan import key_manager
    from castellan.common import exception
    from oslo_config import cfg
    from oslo_context import context

    CONF = cfg.CONF
    # cinder.rpc.set_defaults: the service's own exchange.
    messaging.set_transport_defaults(control_exchange="cinder")
    CONF(["--config-file", sys.argv[1]], project="cinder")
    ctxt = context.RequestContext(project_id=sys.argv[2], user_id="u-1", roles=["member"])

    # cinder's volume_utils.create_encryption_key, for an aes-xts-plain64
    # volume type with key_size 256; cinder builds key_manager.API per use.
    key_id = key_manager.API(CONF).create_key(ctxt, algorithm="aes", length=256)
    key = key_manager.API(CONF).get(ctxt, key_id)
    key_manager.API(CONF).delete(ctxt, key_id)
    try:
        key_manager.API(CONF).get(ctxt, key_id)
        gone = False
    except exception.ManagedObjectNotFoundError:
        gone = True
    from rpcapi import key_manager as custos_key_manager
    print(json.dumps({"key_id": key_id, "algorithm": key.algorithm,
                      "bits": len(key.get_encoded()) * 8, "gone": gone,
                      "control_exchange": CONF.control_exchange,
                      "transports": len(custos_key_manager._clients)}))
""")


def test_cinder_keeps_a_volume_key_through_castellan(key_agent: AgentProcess, rabbit_url: str,
                                                     tmp_path: Path) -> None:
    config = write_config(tmp_path / "cinder.conf", {
        "DEFAULT": {"transport_url": rabbit_url, "control_exchange": "cinder"},
        "key_manager": {"backend": "custos"},
    })

    result = subprocess.run([sys.executable, "-c", CINDER_VOLUME, str(config), PROJECT],
                            capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["algorithm"] == "aes" and outcome["bits"] == 256
    assert outcome["gone"] is True
    # The service's own RPC exchange is untouched, and one transport served
    # every key_manager.API the process built.
    assert outcome["control_exchange"] == "cinder" and outcome["transports"] == 1


def test_cli_keeps_reads_and_deletes_a_key(key_agent: AgentProcess, tmp_path: Path) -> None:
    value = b"cli passphrase \x00\xff"
    (tmp_path / "value").write_bytes(value)
    as_member = ("--project-id", PROJECT, "--roles", "member", "--service-roles", "")

    stored = run_script("custos", key_agent.config, *as_member, "key", "store", "passphrase",
                        "--file", str(tmp_path / "value"), "--name", "cli")
    key_id = json.loads(stored.stdout)
    run_script("custos", key_agent.config, *as_member, "key", "consumer-add", key_id,
               "nova", "instance", "i-1")
    shown = json.loads(run_script("custos", key_agent.config, *as_member,
                                  "key", "get", key_id).stdout)
    listed = json.loads(run_script("custos", key_agent.config, *as_member, "key", "list",
                                   "--object-type", "passphrase").stdout)
    with_values = json.loads(run_script("custos", key_agent.config, *as_member, "key", "list",
                                        "--object-type", "passphrase", "--with-values").stdout)
    refused = run_script("custos", key_agent.config, *as_member, "key", "delete", key_id,
                         check=False)
    run_script("custos", key_agent.config, *as_member, "key", "delete", key_id, "--force")
    gone = run_script("custos", key_agent.config, *as_member, "key", "get", key_id, check=False)

    assert base64.b64decode(shown["value"]) == value and shown["name"] == "cli"
    assert shown["consumers"] == [{"service": "nova", "resource_type": "instance",
                                   "resource_id": "i-1"}]
    assert key_id in [found["uuid"] for found in listed]
    assert all(found["value"] is None for found in listed)
    assert [base64.b64decode(found["value"]) for found in with_values
            if found["uuid"] == key_id] == [value]
    assert refused.returncode == 1 and refused.stderr.startswith("custos: key_has_consumers: ")
    assert gone.returncode == 1 and gone.stderr.startswith("custos: managed_key_not_found: ")



def test_castellan_with_a_configuration_object_of_its_own(key_agent: AgentProcess,
                                                          rabbit_url: str) -> None:
    """``key_manager.API(conf)`` with a private ConfigOpts, as a library caller builds it.

    oslo.messaging registers its tracing options on the global CONF only;
    a client on another configuration object used to fail every call with
    ``NoSuchOptError: oslo_messaging_tracing``.
    """
    from castellan import key_manager as castellan_key_manager
    from castellan.common.objects import passphrase

    conf = cfg.ConfigOpts()
    conf([], project="private", default_config_files=[])
    conf.register_opts(castellan_key_manager.key_manager_opts, group="key_manager")
    conf.set_override("backend", "custos", group="key_manager")
    manager = castellan_key_manager.API(conf)
    conf.set_override("transport_url", rabbit_url, group=key_manager.GROUP)
    try:
        ctxt = _service_context()
        stored = manager.store(ctxt, passphrase.Passphrase(b"private-conf"))
        assert manager.get(ctxt, stored).get_encoded() == b"private-conf"
        manager.delete(ctxt, stored)
    finally:
        key_manager.cleanup()
