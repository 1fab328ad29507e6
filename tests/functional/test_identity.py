"""Verified identity against a real Keystone: what each kind of caller gets.

One ``custos-agent`` process on SQLite with ``[auth] strategy = keystone``
validates every token with a real Keystone (tests/functional/keystone.py),
as its own service user ``custos``. The callers are built the way Nova and
Cinder build theirs: a user token from the request, and a service token
from the service's own ``[service_user]`` section. The forgers hold the
bus credentials and nothing else.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import oslo_messaging as messaging
import pytest
from oslo_config import cfg

from agent import exception, wire
from rpcapi import CustosAPI
from rpcapi import service_token as service_token_source
from tests.functional.agentproc import AgentProcess, run_script, write_config
from tests.functional.conftest import agent_sections
from tests.functional.keystone import DOMAIN, KeystoneServer

INITIATOR = "iqn.1993-08.org.debian:01:identity"
# Long enough to outlast a call or two on a busy machine, short enough to wait out.
CACHE_TIME = 8


def ctx(**values: Any) -> wire.RequestContext:
    return wire.RequestContext(overwrite=False, **values)


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory, exchange: str, rabbit_url: str,
          transport: messaging.Transport, keystone: KeystoneServer) -> Iterator[AgentProcess]:
    workdir = tmp_path_factory.mktemp("identity")
    sections = agent_sections(
        workdir, exchange, host="agent-identity", rabbit_url=rabbit_url,
        auth={"strategy": "keystone"},
        keystone_authtoken={**keystone.agent_options(), "token_cache_time": CACHE_TIME},
        DEFAULT={"enabled_backends": "lvm-1"},
        **{"lvm-1": {"volume_driver": "iscsi_chap", "volume_backend_name": "lvm",
                     "target_portal": "192.0.2.10:3260"}})
    proc = AgentProcess(workdir, sections)
    proc.prepare()
    proc.start()
    try:
        proc.wait_ready(transport, ctx())
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def client(agent: AgentProcess, transport: messaging.Transport) -> CustosAPI:
    """A client that adds no token of its own: each test says what it sends."""
    return CustosAPI(transport=transport, timeout=20, service_token=None)


@pytest.fixture(scope="module")
def nova_token(keystone: KeystoneServer, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The service token source of a process configured as nova-api.

    Its configuration file has the ``[service_user]`` section Nova writes
    for ``send_service_user_token``.
    """
    config = write_config(tmp_path_factory.mktemp("nova") / "nova.conf",
                          {"service_user": keystone.service_user_options("nova")})
    conf = cfg.ConfigOpts()
    conf([], project="nova", default_config_files=[str(config)])
    source = service_token_source.from_conf(conf)
    assert source is not None
    return source


def alice(keystone: KeystoneServer) -> str:
    return keystone.token("alice", "p1")


def test_a_forged_admin_context_without_a_token_is_refused(client, keystone):
    secret = client.secret_generate(ctx(auth_token=alice(keystone)), "ceph", uuid.uuid4().hex)
    forged = ctx(project_id=keystone.project_id("p1"), user_id="attacker", roles=["admin"],
                 service_roles=["service"], is_admin=True, system_scope="all")

    for attempt in (lambda: client.secret_get_value(forged, secret),
                    lambda: client.key_list(forged),
                    lambda: client.initialize_connection(
                        forged, {"id": str(uuid.uuid4())},
                        {"initiator": INITIATOR, "host": "h1"})):
        with pytest.raises(exception.Unauthorized):
            attempt()
    # A made-up token is refused by Keystone, not believed.
    with pytest.raises(exception.Unauthorized):
        client.secret_get_value(ctx(auth_token="gAAAAABforged" + "x" * 160, roles=["admin"]),
                                secret)


def test_a_member_token_claiming_admin_gets_member_rights(client, keystone):
    secret = client.secret_generate(ctx(auth_token=alice(keystone)), "ceph", uuid.uuid4().hex)
    bob = ctx(auth_token=keystone.token("bob", "p2"), project_id=keystone.project_id("p1"),
              roles=["admin"], is_admin=True, service_roles=["service"])

    with pytest.raises(exception.SecretNotFound):
        client.secret_get_value(bob, secret)
    assert secret not in {s["uuid"] for s in client.secret_list(bob)}
    with pytest.raises(exception.Forbidden):
        client.initialize_connection(bob, {"id": str(uuid.uuid4())},
                                     {"initiator": INITIATOR, "host": "h1"})


def test_who_reads_a_p1_secret_value(client, keystone, nova_token):
    secret = client.secret_generate(ctx(auth_token=alice(keystone)), "ceph", uuid.uuid4().hex)
    outcomes = {}
    callers = {
        "member": ctx(auth_token=alice(keystone)),
        "project-less token": ctx(auth_token=keystone.token("eve", domain=DOMAIN)),
        "other project with service token": ctx(auth_token=keystone.token("bob", "p2"),
                                                service_token=nova_token()),
        "admin of p1": ctx(auth_token=keystone.token("dave", "p1")),
        "system admin": ctx(auth_token=keystone.token("admin", system=True)),
        "service token alone": ctx(service_token=nova_token()),
    }
    for name, caller in callers.items():
        try:
            outcomes[name] = bool(base64.b64decode(client.secret_get_value(caller, secret)))
        except exception.CustosException as error:
            outcomes[name] = error.code
            assert secret not in error.msg or error.code == "secret_not_found"

    assert outcomes == {"member": True, "project-less token": "forbidden",
                        "other project with service token": "secret_not_found",
                        "admin of p1": True, "system admin": True,
                        "service token alone": "forbidden"}


def test_service_accounts_need_both_tokens(client, keystone, nova_token):
    """SPEC §3.4 end to end: a SERVICE_ account needs a user token AND a service token."""
    volume = str(uuid.uuid4())
    user = ctx(auth_token=alice(keystone))
    service = ctx(service_token=nova_token())
    both = ctx(auth_token=alice(keystone), service_token=nova_token())

    for alone in (user, service):
        with pytest.raises(exception.Forbidden):
            client.backup_metadata_export(alone, str(uuid.uuid4()), {"id": volume, "base": {}})
        with pytest.raises(exception.Forbidden):
            client.volume_glance_metadata_set(alone, volume, {"license": "x"}, wait=True)

    backup = str(uuid.uuid4())
    document = client.backup_metadata_export(both, backup, {"id": volume, "base": {}})
    assert json.loads(document)["version"]
    assert client.backup_metadata_get(both, backup) == document
    with pytest.raises(exception.Forbidden):
        client.backup_metadata_get(user, backup)


def test_the_metadata_service_calls_with_its_service_token_alone(client, keystone, nova_token):
    instance = str(uuid.uuid4())
    service = ctx(service_token=nova_token())

    client.instance_boot_roles_set(service, instance, ["member"], wait=True)
    assert client.vendordata_get(service, {"uuid": instance, "project_id": "p",
                                           "image_id": None, "hostname": "vm",
                                           "user_data": None, "metadata": {}}) == {}
    # The same call with a token of a user without a service role is refused.
    with pytest.raises(exception.Forbidden):
        client.vendordata_get(ctx(auth_token=alice(keystone)), {"uuid": instance})


def test_a_revoked_token_stops_working_within_the_cache_time(client, keystone):
    token = keystone.token("bob", "p2")
    assert client.secret_list(ctx(auth_token=token)) == []

    keystone.revoke(token)
    time.sleep(CACHE_TIME + 0.5)

    with pytest.raises(exception.Unauthorized):
        client.secret_list(ctx(auth_token=token))


def test_an_expired_user_token_counts_only_beside_a_valid_service_token(
        client, keystone, nova_token):
    expired = keystone.expired_token("alice", "p1")

    with pytest.raises(exception.Unauthorized):
        client.secret_list(ctx(auth_token=expired))
    assert client.secret_list(ctx(auth_token=expired, service_token=nova_token())) is not None
    # A service token without a service role does not let it through.
    plain_user_as_service = keystone.token("bob", "p2")
    with pytest.raises(exception.Unauthorized):
        client.secret_list(ctx(auth_token=expired, service_token=plain_user_as_service))


def test_keystone_down_then_up_again_without_restarting_the_agent(client, keystone):
    known = keystone.token("alice", "p1")
    unseen = keystone.token("bob", "p2")
    client.secret_list(ctx(auth_token=known))

    with keystone.outage():
        # What the agent validated moments ago is still believed.
        assert client.secret_list(ctx(auth_token=known)) is not None
        with pytest.raises(exception.AuthUnavailable):
            client.secret_list(ctx(auth_token=unseen))

    deadline = time.monotonic() + 20
    while True:
        try:
            assert client.secret_list(ctx(auth_token=unseen)) == []
            break
        except exception.AuthUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_the_cli_authenticates_with_os_variables(agent, keystone):
    env = {"OS_AUTH_URL": keystone.url, "OS_USERNAME": "alice",
           "OS_PASSWORD": keystone.passwords["alice"], "OS_PROJECT_NAME": "p1",
           "OS_USER_DOMAIN_NAME": DOMAIN, "OS_PROJECT_DOMAIN_NAME": DOMAIN}
    old = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        created = run_script("custos", agent.config, "secret", "generate", "ceph",
                             uuid.uuid4().hex)
        listed = run_script("custos", agent.config, "secret", "list")
        claimed = run_script("custos", agent.config, "--roles", "admin", "secret", "list",
                             check=False)
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    uuid_ = json.loads(created.stdout)
    assert uuid_ in {s["uuid"] for s in json.loads(listed.stdout)}
    assert claimed.returncode == 1
    assert claimed.stderr.startswith("custos: configuration_error: ")
    assert "--roles" in claimed.stderr and "strategy = trusted" in claimed.stderr
    without = run_script("custos", agent.config, "secret", "list", check=False)
    assert without.returncode == 1 and "OS_AUTH_URL" in without.stderr


def test_no_token_reaches_the_agents_log(agent, client, keystone):
    token = alice(keystone)
    client.secret_list(ctx(auth_token=token))
    with pytest.raises(exception.Unauthorized):
        client.secret_list(ctx(auth_token=token + "tampered"))

    log = agent.log_path.read_text()
    assert token not in log and token[:40] not in log


# castellan's own key manager test cases, with castellan's Keystone
# credentials instead of a request context: the backend turns them into a
# token, and the agent validates it.
_CREDENTIAL: dict[str, Any] = {}


@pytest.fixture(scope="module")
def keystone_backend(agent: AgentProcess, keystone: KeystoneServer,
                     rabbit_url: str) -> Iterator[None]:
    from castellan.common.credentials import keystone_password

    from rpcapi import key_manager

    conf = cfg.CONF
    conf.register_opts(key_manager.OPTS, group=key_manager.GROUP)
    conf.set_override("transport_url", rabbit_url, group=key_manager.GROUP)
    _CREDENTIAL["alice"] = keystone_password.KeystonePassword(
        keystone.passwords["alice"], auth_url=keystone.url, username="alice",
        user_domain_name=DOMAIN, project_name="p1", project_domain_name=DOMAIN)
    try:
        yield
    finally:
        key_manager.cleanup()
        conf.clear_override("transport_url", group=key_manager.GROUP)


def _castellan_case() -> type:
    from castellan.tests.functional.key_manager import test_key_manager
    from oslotest import base

    from rpcapi import key_manager

    @pytest.mark.usefixtures("keystone_backend")
    class CustosKeystoneCredentialTestCase(test_key_manager.KeyManagerTestCase,
                                           base.BaseTestCase):
        """castellan's test cases for every key manager, as a KeystonePassword user."""

        def _create_key_manager(self) -> Any:
            return key_manager.CustosKeyManager(cfg.CONF)

        def setUp(self) -> None:
            super().setUp()
            self.ctxt = _CREDENTIAL["alice"]

    return CustosKeystoneCredentialTestCase


CustosKeystoneCredentialTestCase = _castellan_case()


def test_castellan_keys_of_a_keystone_user_belong_to_its_project(keystone_backend, client,
                                                                 keystone):
    from castellan.common import exception as castellan_exception
    from castellan.common.objects import passphrase

    from rpcapi import key_manager

    manager = key_manager.CustosKeyManager(cfg.CONF)
    stored = manager.store(_CREDENTIAL["alice"], passphrase.Passphrase(b"volume-key"))

    mine = client.key_get(ctx(auth_token=alice(keystone)), stored)
    assert mine["value"] == b"volume-key"
    with pytest.raises(exception.ManagedKeyNotFound):
        client.key_get(ctx(auth_token=keystone.token("bob", "p2")), stored)
    # A credential Keystone refuses is castellan's Forbidden, and sends nothing.
    from castellan.common.credentials import keystone_password

    wrong = keystone_password.KeystonePassword("not-the-password", auth_url=keystone.url,
                                               username="alice", user_domain_name=DOMAIN,
                                               project_name="p1", project_domain_name=DOMAIN)
    with pytest.raises(castellan_exception.Forbidden):
        manager.get(wrong, stored)
