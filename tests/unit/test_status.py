"""custos-status upgrade check: each check says what an operator must fix."""

from __future__ import annotations

import os
import socket

import pytest
from oslo_policy import opts as policy_opts
from oslo_upgradecheck.upgradecheck import Code

from agent.cmd import status
from agent.keystore import masterkey
from db import api as db_api
from db import migration


@pytest.fixture
def checked(conf):
    policy_opts.set_defaults(conf)
    return conf


def test_schema_check_fails_until_db_sync_then_succeeds(checked):
    before = status.check_schema()
    db_api.configure()
    migration.db_sync()
    after = status.check_schema()

    assert before.code == Code.FAILURE
    assert "custos-manage db sync" in before.details
    assert after.code == Code.SUCCESS


def test_schema_check_fails_on_an_unreachable_database(checked):
    checked.set_override("connection", "postgresql+psycopg2://nobody@127.0.0.1:1/none",
                         group="database")

    result = status.check_schema()

    assert result.code == Code.FAILURE
    assert "not reachable" in result.details


def test_master_key_check_names_a_missing_key(checked):
    result = status.check_master_key()

    assert result.code == Code.FAILURE
    assert "keys init" in result.details


def test_master_key_check_refuses_a_key_others_can_read(checked):
    path = masterkey.default_path()
    masterkey.init_key_file(path)
    good = status.check_master_key()
    os.chmod(path, 0o640)

    loose = status.check_master_key()

    assert good.code == Code.SUCCESS
    assert loose.code == Code.FAILURE
    assert "0640" in loose.details and "0600" in loose.details


def test_master_key_check_refuses_a_truncated_key(checked):
    path = masterkey.default_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as handle:
        handle.write(b"short")

    assert status.check_master_key().code == Code.FAILURE


def test_backend_check_names_the_section_that_does_not_load(checked):
    checked.set_override("enabled_backends", ["lvm-1"])
    checked.register_group(__import__("oslo_config").cfg.OptGroup("lvm-1"))
    from agent.connections import backends

    backends.register_opts(checked, "lvm-1")
    checked.set_override("volume_driver", "no_such_driver", group="lvm-1")

    result = status.check_backends()

    assert result.code == Code.FAILURE
    assert "no_such_driver" in result.details


def test_broker_check_fails_when_no_node_answers_and_warns_when_one_does(checked):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    try:
        checked.set_override("transport_url", f"rabbit://u:p@127.0.0.1:{port}/")
        none = status.check_broker()
        checked.set_override(
            "transport_url",
            f"rabbit://u:p@127.0.0.1:{listening.getsockname()[1]},u:p@127.0.0.1:{port}/")
        one = status.check_broker()
    finally:
        listening.close()

    assert none.code == Code.FAILURE
    assert one.code == Code.WARNING
    assert f"127.0.0.1:{port}" in one.details
    assert "p@" not in none.details + one.details


def test_policy_file_check_refuses_unparsable_and_dangling_rules(checked, tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text('"custos:health": [unclosed\n')
    dangling = tmp_path / "dangling.yaml"
    dangling.write_text('"custos:secret_list": "rule:no_such_rule"\n')
    fine = tmp_path / "fine.yaml"
    fine.write_text('"custos:secret_list": "rule:context_is_admin"\n')

    results = {}
    for path in (broken, dangling, fine):
        checked.set_override("policy_file", str(path), group="oslo_policy")
        results[path.name] = status.check_policy_file()

    assert results["broken.yaml"].code == Code.FAILURE
    assert results["dangling.yaml"].code == Code.FAILURE
    assert results["fine.yaml"].code == Code.SUCCESS


def test_staged_key_check_names_a_node_that_lacks_the_staged_key(checked):
    from agent.keystore import rotation

    db_api.configure()
    migration.db_sync()
    path = masterkey.default_path()
    masterkey.init_key_file(path)
    nothing_staged = status.check_staged_key()
    rotation.stage(path, checked.host)
    staged = status.check_staged_key()
    os.remove(path + masterkey.STAGED_SUFFIX)

    lacking = status.check_staged_key()

    assert nothing_staged.code == Code.SUCCESS
    assert staged.code == Code.SUCCESS
    assert lacking.code == Code.FAILURE
    assert "keys stage" in lacking.details


def test_identity_check_warns_for_a_trusted_agent_and_names_tokenless_callers(checked):
    from agent.identity import tokenless
    from agent.identity.authenticator import Authenticator
    from agent.wire import RequestContext

    assert status.check_identity().code == Code.WARNING
    assert "refuses nobody" in status.check_identity().details

    counter = tokenless.TokenlessCounter(tokenless.path(checked.state_path))
    authn = Authenticator(checked, tokenless_counter=counter)
    for _ in range(3):
        authn.identify(RequestContext(user_id="cinder-legacy", overwrite=False),
                       "initialize_connection")
    authn.identify(RequestContext(user_id="nova", auth_token="t", overwrite=False),
                   "vendordata_get")
    counter.flush()

    result = status.check_identity()
    assert result.code == Code.WARNING
    assert "user cinder-legacy initialize_connection x3" in result.details
    assert "nova" not in result.details
    assert oct(os.stat(tokenless.path(checked.state_path)).st_mode & 0o777) == "0o600"


def test_identity_check_needs_the_agents_service_user_in_keystone_mode(checked):
    checked.set_override("strategy", "keystone", group="auth")
    assert status.check_identity().code == Code.FAILURE

    checked.set_override("auth_type", "password", group="keystone_authtoken")
    assert status.check_identity().code == Code.SUCCESS


@pytest.mark.parametrize(("bind", "allow", "code"), [
    ("", False, Code.SUCCESS), ("127.0.0.1:9464", False, Code.SUCCESS),
    ("[::1]:9464", False, Code.SUCCESS), ("0.0.0.0:9464", False, Code.WARNING),
    ("0.0.0.0:9464", True, Code.SUCCESS), ("nonsense", False, Code.FAILURE)])
def test_metrics_check_warns_of_a_bind_beyond_loopback_unless_it_is_meant(
        checked, bind, allow, code):
    checked.set_override("bind", bind, group="metrics")
    checked.set_override("allow_remote", allow, group="metrics")

    result = status.check_metrics()

    assert result.code == code
    if code == Code.WARNING:
        assert "allow_remote" in result.details


def test_two_agents_sharing_a_state_path_both_write_their_counts(checked, caplog):
    import logging
    import threading

    from agent.identity import tokenless

    counters = [tokenless.TokenlessCounter(tokenless.path(checked.state_path))
                for _ in range(2)]
    for n, counter in enumerate(counters):
        counter.count(f"user-{n}", "secret_list")
    failures = []

    def flush_often(counter):
        for _ in range(200):
            counter._dirty = True
            try:
                counter.flush()
            except Exception as error:  # noqa: BLE001 - the test reports it
                failures.append(error)

    threads = [threading.Thread(target=flush_often, args=(c,)) for c in counters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert tokenless.read(tokenless.path(checked.state_path))[0]["requests"] == 1
    assert not list(tokenless.path(checked.state_path).parent.glob("*.tmp"))
