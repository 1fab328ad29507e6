"""What a caller gets from a running agent that believes only tokens.

The agent runs on the fake transport with ``[auth] strategy = keystone``;
a dictionary plays Keystone's validation answers (tests/unit/identity/
conftest.py). The same attacks against a real Keystone are in
tests/functional/test_identity.py.
"""

from __future__ import annotations

import base64
import logging
import uuid

import oslo_messaging as messaging
import pytest

from agent import exception
from agent.wire import RequestContext
from tests.unit.identity.conftest import P1, P2


def ctx(**values):
    return RequestContext(overwrite=False, **values)


@pytest.fixture
def agent(keystone_mode, harness):
    return harness


def _p1_secret(api):
    uuid_ = api.secret_generate(ctx(auth_token="tok-alice"), "ceph", uuid.uuid4().hex)
    return uuid_


def _not_found(api, caller, asked):
    """What ``caller`` is told for ``asked`` when no secret has that UUID at all.

    A refusal may repeat the UUID the caller sent, and must read exactly
    as it would for a secret that does not exist.
    """
    with pytest.raises(exception.SecretNotFound) as raised:
        api.secret_get_value(caller, str(uuid.uuid4()))
    missing = raised.value.kwargs["secret"]
    return raised.value.msg.replace(missing, asked)


def test_a_forged_admin_context_without_a_token_gets_nothing(agent):
    secret = _p1_secret(agent.api)
    forged = ctx(project_id="attacker", roles=["admin"], service_roles=["service"],
                 is_admin=True)

    with pytest.raises(exception.Unauthorized):
        agent.api.secret_get_value(forged, secret)
    with pytest.raises(exception.Unauthorized):
        agent.api.key_list(forged)
    with pytest.raises(exception.Unauthorized):
        agent.api.initialize_connection(forged, {"id": str(uuid.uuid4())},
                                        {"initiator": "iqn.2004-10.com.example:h1", "host": "h1"})


def test_a_member_token_claiming_admin_gets_member_rights(agent):
    secret = _p1_secret(agent.api)
    bob_claims_admin = ctx(auth_token="tok-bob", project_id=P1, roles=["admin"],
                           system_scope="all", is_admin=True)

    with pytest.raises(exception.SecretNotFound) as raised:
        agent.api.secret_get_value(bob_claims_admin, secret)
    assert raised.value.msg == _not_found(agent.api, bob_claims_admin, secret)
    assert agent.api.secret_list(bob_claims_admin) == []


@pytest.mark.parametrize("caller,outcome", [
    pytest.param(ctx(auth_token="tok-alice"), "value", id="member of the project"),
    pytest.param(ctx(auth_token="tok-eve"), exception.Forbidden, id="project-less token"),
    pytest.param(ctx(auth_token="tok-bob", service_token="tok-nova"), exception.SecretNotFound,
                 id="another project with a service token"),
    pytest.param(ctx(auth_token="tok-dave"), "value", id="admin of the project"),
    pytest.param(ctx(service_token="tok-nova"), exception.Forbidden, id="service token alone"),
])
def test_who_reads_a_project_secret(agent, caller, outcome):
    secret = _p1_secret(agent.api)

    if outcome == "value":
        assert len(base64.b64decode(agent.api.secret_get_value(caller, secret))) > 0
    else:
        with pytest.raises(outcome) as raised:
            agent.api.secret_get_value(caller, secret)
        if outcome is exception.SecretNotFound:
            assert raised.value.msg == _not_found(agent.api, caller, secret)


def test_another_projects_admin_sees_the_secret_but_not_its_value(agent, keystone_mode):
    from tests.unit.identity.conftest import identity

    keystone_mode.tokens["tok-p2-admin"] = identity("carol", P2, ["admin", "member"])
    secret = _p1_secret(agent.api)
    p2_admin = ctx(auth_token="tok-p2-admin")

    assert agent.api.secret_get_xml_desc(p2_admin, secret)
    with pytest.raises(exception.Forbidden):
        agent.api.secret_get_value(p2_admin, secret)

    system = ctx(auth_token="tok-system")
    assert agent.api.secret_get_value(system, secret)
    read = agent.notifications("secret.value_read")
    assert [(n["payload"]["uuid"], n["payload"]["project_id"],
             n["payload"]["reader_user_id"]) for n in read] == [(secret, P1, "admin")]
    assert "value" not in read[0]["payload"]


def test_health_needs_no_token(agent):
    assert agent.api.health(ctx())["database"] == "ok"


def test_a_cast_that_cannot_be_verified_is_logged_and_dropped(agent, caplog):
    caplog.set_level(logging.DEBUG)
    instance = str(uuid.uuid4())

    agent.api.instance_boot_roles_set(ctx(service_token="gAAAAA-forged-cast"), instance,
                                      ["admin"])
    agent.api.instance_boot_roles_set(ctx(service_token="tok-nova"), instance, ["member"],
                                      wait=True)

    dropped = [r for r in caplog.records if "Dropped a instance_boot_roles_set cast" in
               r.getMessage()]
    assert [r.levelno for r in dropped] == [logging.ERROR]
    assert "gAAAAA-forged-cast" not in caplog.text
    from agent.vendordata import bootroles
    from db import api as db_api
    assert db_api.run_in_transaction(
        lambda session: bootroles.load(session, instance)) == ["member"]


@pytest.mark.parametrize("attribute", ["runtime", "store", "keys", "vendordata", "target",
                                       "__init__"])
def test_only_rpc_methods_are_reachable_from_the_bus(agent, attribute):
    client = agent.api.client.prepare(version="1.0")

    with pytest.raises(exception.UnknownMethod):
        client.call(ctx(auth_token="tok-dave"), attribute)


def test_a_refusal_carries_no_traceback_of_the_agent(agent):
    with pytest.raises(exception.Unauthorized) as raised:
        agent.api.secret_list(ctx(auth_token="garbage"))

    text = str(raised.value)
    assert "Traceback" not in text and 'File "' not in text and "agent/" not in text
