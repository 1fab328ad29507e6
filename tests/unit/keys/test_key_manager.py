"""The castellan backend as a service sees it: construction, contexts, objects, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from castellan import key_manager as castellan_key_manager
from castellan import options as castellan_options
from castellan.common import exception as castellan_exception
from castellan.common.credentials import keystone_password, keystone_token, password
from castellan.common.objects import opaque_data, passphrase, private_key, public_key
from castellan.common.objects import symmetric_key, x_509
from oslo_context import context as oslo_context

from agent import rpc
from rpcapi import CustosAPI, key_manager
from tests.common import OTHER_PROJECT, PROJECT
from tests.conftest import REPO_ROOT


def _context(project_id: str | None = PROJECT) -> oslo_context.RequestContext:
    return oslo_context.RequestContext(project_id=project_id, user_id="u", roles=["member"])


@pytest.fixture
def unreachable(conf, monkeypatch):
    """A backend configured for a broker that does not exist."""
    monkeypatch.setattr(key_manager, "_clients", {})
    backend = key_manager.CustosKeyManager(conf)
    conf.set_override("transport_url", "rabbit://nobody:nothing@192.0.2.1:1/",
                      group=key_manager.GROUP)
    return backend


@pytest.fixture
def backend(harness, monkeypatch):
    """A backend whose process-wide client is the in-process agent's."""
    manager = key_manager.CustosKeyManager(harness.service.conf)
    monkeypatch.setattr(key_manager, "_clients", {(None, None): harness.api})
    return manager


def test_the_backend_loads_no_server_module_into_the_service():
    code = ("import sys, json, rpcapi.key_manager\n"
            "print(json.dumps(sorted(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True,
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "EVENTLET_NO_GREENDNS": "yes"})
    modules = json.loads(result.stdout.splitlines()[-1])

    custos = {m for m in modules if m.split(".")[0] in ("agent", "db")}
    assert custos == {"agent", "agent.exception", "agent.wire"}
    assert not [m for m in modules if m.split(".")[0] in ("sqlalchemy", "alembic",
                                                           "oslo_policy", "defusedxml")]


def test_construction_and_option_listing_build_no_transport(unreachable, conf):
    conf.register_opts(castellan_key_manager.key_manager_opts, group="key_manager")
    conf.set_override("backend", "custos", group="key_manager")

    assert isinstance(castellan_key_manager.API(conf), key_manager.CustosKeyManager)
    listed = dict(castellan_options.list_opts())
    assert [opt.name for opt in listed["custos"]] == ["transport_url", "timeout"]
    assert [(group, [o.name for o in opts])
            for group, opts in unreachable.list_options_for_discovery()] == [
        ("custos", ["transport_url", "timeout"])]
    assert key_manager._clients == {}


@pytest.mark.parametrize("context", [
    None, password.Password("a-user", "a-password"),
    keystone_password.KeystonePassword("a-password", username="a-user"),
    keystone_token.KeystoneToken("a-token")],
    ids=["none", "password without Keystone", "Keystone password without auth_url",
         "Keystone token without auth_url"])
def test_without_a_token_it_refuses_before_any_rpc(unreachable, context):
    calls = [lambda: unreachable.create_key(context, "AES", 256),
             lambda: unreachable.create_key_pair(context, "RSA", 2048),
             lambda: unreachable.store(context, passphrase.Passphrase(b"p")),
             lambda: unreachable.get(context, str(uuid.uuid4())),
             lambda: unreachable.list(context),
             lambda: unreachable.delete(context, str(uuid.uuid4())),
             lambda: unreachable.add_consumer(context, str(uuid.uuid4()), {})]
    for call in calls:
        with pytest.raises(castellan_exception.Forbidden):
            call()
    assert key_manager._clients == {}


@pytest.mark.parametrize("managed", [
    symmetric_key.SymmetricKey("AES", 256, os.urandom(32), name="volume key"),
    public_key.PublicKey("RSA", 2048, b"0\x82public-der"),
    private_key.PrivateKey("RSA", 2048, b"0\x82private-der"),
    x_509.X509(b"0\x82certificate-der"),
    passphrase.Passphrase(b"vtpm passphrase"),
    opaque_data.OpaqueData(b"\x00opaque\xff"),
], ids=lambda m: m.managed_type())
def test_every_castellan_object_comes_back_as_stored(backend, harness, managed):
    ctxt = _context()
    object_id = backend.store(ctxt, managed)

    found = backend.get(ctxt, object_id)
    metadata = backend.get(ctxt, object_id, metadata_only=True)

    assert type(found) is type(managed) and found == managed
    assert found.get_encoded() == managed.get_encoded() and found.id == object_id
    assert found.name == managed.name and isinstance(found.created, int)
    assert metadata.is_metadata_only() and metadata.id == object_id
    assert backend.list(ctxt, object_type=type(managed)) == [managed]
    assert harness.notifications("key.create")[0]["payload"]["object_type"] == \
        managed.managed_type()


def test_generated_keys_and_pairs_are_castellan_objects(backend):
    ctxt = _context()
    key = backend.get(ctxt, backend.create_key(ctxt, "AES", 256, name="k"))
    private_id, public_id = backend.create_key_pair(ctxt, "RSA", 2048)

    assert isinstance(key, symmetric_key.SymmetricKey) and len(key.get_encoded()) == 32
    assert isinstance(backend.get(ctxt, private_id), private_key.PrivateKey)
    assert isinstance(backend.get(ctxt, public_id), public_key.PublicKey)


def test_custos_errors_become_castellan_errors(backend):
    ctxt = _context()
    object_id = backend.store(ctxt, passphrase.Passphrase(b"p"))
    consumer = {"service": "cinder", "resource_type": "volume", "resource_id": "v-1"}
    backend.add_consumer(ctxt, object_id, consumer)

    for call in (lambda: backend.get(ctxt, str(uuid.uuid4())),
                 lambda: backend.get(_context(OTHER_PROJECT), object_id),
                 lambda: backend.delete(_context(OTHER_PROJECT), object_id, force=True),
                 lambda: backend.remove_consumer(ctxt, object_id, {**consumer,
                                                                   "resource_id": "v-2"})):
        with pytest.raises(castellan_exception.ManagedObjectNotFoundError):
            call()
    with pytest.raises(castellan_exception.Forbidden):
        backend.list(_context(None))
    for call in (lambda: backend.delete(ctxt, object_id),
                 lambda: backend.delete(ctxt, None),
                 lambda: backend.create_key(ctxt, "AES", 100),
                 lambda: backend.add_consumer(ctxt, object_id, {"service": "cinder"}),
                 lambda: backend.list(ctxt, object_type=str)):
        with pytest.raises(castellan_exception.KeyManagerError) as caught:
            call()
        assert not isinstance(caught.value, (castellan_exception.ManagedObjectNotFoundError,
                                             castellan_exception.Forbidden))
    assert backend.get(ctxt, object_id).consumers == [consumer]
    backend.delete(ctxt, object_id, force=True)
    assert backend.list(ctxt) == []


def test_a_service_capped_at_1_0_gets_key_manager_errors_and_sends_nothing(harness, monkeypatch):
    harness.service.conf.set_override("custos", "1.0", group="upgrade_levels")
    capped = key_manager.CustosKeyManager(harness.service.conf)
    monkeypatch.setattr(key_manager, "_clients",
                        {(None, None): CustosAPI(transport=rpc.TRANSPORT, timeout=10)})

    with pytest.raises(castellan_exception.KeyManagerError) as caught:
        capped.create_key(_context(), "AES", 256)

    assert "1.0" in str(caught.value)
    assert harness.api.key_list(_context(), metadata_only=True) == []
    assert harness.notifications("key.create") == []
