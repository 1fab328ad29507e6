"""The authenticator's rules, as keystonemiddleware applies them, one by one."""

from __future__ import annotations

import logging

import pytest

from agent import exception
from agent.identity.authenticator import Authenticator
from agent.identity.cache import TokenCache, digest
from agent.wire import RequestContext
from tests.unit.identity.conftest import P1, P2, identity


def claimed(**values):
    return RequestContext(overwrite=False, **values)


def test_nothing_the_message_claims_reaches_the_identity(conf, keystone_mode):
    forged = claimed(auth_token="tok-alice", project_id=P2, user_id="root",
                     roles=["admin"], service_roles=["service"], is_admin=True,
                     system_scope="all")

    who = Authenticator(conf).identify(forged, "secret_get_value")

    assert (who.project_id, who.user_id, who.roles) == (P1, "alice", ["member", "reader"])
    assert who.service_roles == [] and not who.is_admin and who.system_scope is None


def test_no_token_is_unauthorized_whatever_the_claims(conf, keystone_mode):
    with pytest.raises(exception.Unauthorized):
        Authenticator(conf).identify(claimed(project_id=P1, roles=["admin"]), "key_list")
    assert keystone_mode.asked == []


def test_a_service_token_gives_service_roles_and_no_project(conf, keystone_mode):
    who = Authenticator(conf).identify(claimed(service_token="tok-nova"), "vendordata_get")

    assert who.service_roles == ["service"] and who.service_user_id == "nova"
    assert who.project_id is None and who.roles == []


def test_both_tokens_make_the_composite_identity(conf, keystone_mode):
    who = Authenticator(conf).identify(
        claimed(auth_token="tok-alice", service_token="tok-nova"), "backup_metadata_export")

    assert (who.project_id, who.roles, who.service_roles) == (P1, ["member", "reader"],
                                                              ["service"])


def test_a_service_token_without_a_service_role_is_refused(conf, keystone_mode):
    with pytest.raises(exception.Unauthorized, match="service_token_roles"):
        Authenticator(conf).identify(
            claimed(auth_token="tok-alice", service_token="tok-plain"), "key_list")


def test_an_expired_user_token_counts_only_beside_a_valid_service_token(conf, keystone_mode):
    # Even where a role-less service token is let through, it does not
    # make an expired user token count.
    conf.set_override("service_token_roles_required", False, group="keystone_authtoken")
    authn = Authenticator(conf)

    with pytest.raises(exception.Unauthorized, match="expired"):
        authn.identify(claimed(auth_token="tok-alice-expired"), "key_list")
    with pytest.raises(exception.Unauthorized, match="expired"):
        authn.identify(claimed(auth_token="tok-alice-expired", service_token="tok-plain"),
                       "key_list")
    who = authn.identify(claimed(auth_token="tok-alice-expired", service_token="tok-nova"),
                         "key_list")
    assert who.project_id == P1 and who.service_roles == ["service"]


def test_an_expired_service_token_is_refused(conf, keystone_mode):
    keystone_mode.tokens["tok-nova-old"] = identity("nova", None, ["service"], expires_in=-1)

    with pytest.raises(exception.Unauthorized, match="service token has expired"):
        Authenticator(conf).identify(claimed(auth_token="tok-alice",
                                             service_token="tok-nova-old"), "key_list")


def test_a_validated_token_costs_one_round_trip_and_is_believed_for_the_cache_time(
        conf, keystone_mode):
    conf.set_override("token_cache_time", 300, group="keystone_authtoken")
    authn = Authenticator(conf)
    for _ in range(5):
        authn.identify(claimed(auth_token="tok-alice"), "key_list")
    assert keystone_mode.asked == ["tok-alice"]


def test_a_revoked_token_stops_working_once_the_cache_time_is_over(conf, keystone_mode):
    conf.set_override("token_cache_time", 300, group="keystone_authtoken")
    now = [1000.0]
    authn = Authenticator(conf)
    authn.known = TokenCache(10, clock=lambda: now[0])
    authn.identify(claimed(auth_token="tok-bob"), "key_list")

    del keystone_mode.tokens["tok-bob"]  # revoked
    now[0] += 299
    assert authn.identify(claimed(auth_token="tok-bob"), "key_list").user_id == "bob"
    now[0] += 2
    with pytest.raises(exception.Unauthorized):
        authn.identify(claimed(auth_token="tok-bob"), "key_list")


def test_a_refused_token_is_refused_again_without_asking_keystone(conf, keystone_mode):
    authn = Authenticator(conf)
    for _ in range(20):
        with pytest.raises(exception.Unauthorized):
            authn.identify(claimed(auth_token="garbage"), "key_list")
    assert keystone_mode.asked == ["garbage"]


def test_keystone_down_refuses_new_tokens_and_serves_known_ones(conf, keystone_mode):
    authn = Authenticator(conf)
    authn.identify(claimed(auth_token="tok-alice"), "key_list")
    keystone_mode.down = True

    assert authn.identify(claimed(auth_token="tok-alice"), "key_list").project_id == P1
    with pytest.raises(exception.AuthUnavailable):
        authn.identify(claimed(auth_token="tok-bob"), "key_list")

    keystone_mode.down = False
    assert authn.identify(claimed(auth_token="tok-bob"), "key_list").project_id == P2


def test_the_cache_is_bounded_and_keyed_by_a_digest(conf, keystone_mode):
    conf.set_override("identity_cache_size", 3, group="auth")
    authn = Authenticator(conf)
    for n in range(10):
        keystone_mode.tokens[f"tok-{n}"] = identity(f"u{n}", P1, ["member"])
        authn.identify(claimed(auth_token=f"tok-{n}"), "key_list")

    assert len(authn.known) == 3
    assert all(len(key) == 32 for key in authn.known._entries)
    assert authn.known.get(digest("tok-9")) is not None
    assert authn.known.get(digest("tok-0")) is None


@pytest.mark.parametrize("token", [123, ["tok"], "x" * 9000, "a\x00b"])
def test_a_token_that_is_not_a_bounded_string_is_invalid_input(conf, keystone_mode, token):
    with pytest.raises(exception.InvalidInput, match="context.auth_token"):
        Authenticator(conf).identify(claimed(auth_token=token), "key_list")


def test_no_token_appears_in_an_error_or_a_log_line(conf, keystone_mode, captured_logs):
    authn = Authenticator(conf)
    errors = []
    for ctxt in (claimed(auth_token="gAAAAA-secret-garbage"),
                 claimed(auth_token="tok-alice-expired"),
                 claimed(auth_token="tok-alice", service_token="tok-plain")):
        with pytest.raises(exception.CustosException) as raised:
            authn.identify(ctxt, "key_list")
        errors.append(str(raised.value))

    text = " ".join(errors) + captured_logs.text
    for token in ("gAAAAA-secret-garbage", "tok-alice-expired", "tok-alice", "tok-plain"):
        assert token not in text


def test_trusted_mode_believes_the_claims_and_counts_tokenless_requests(conf, keystone):
    authn = Authenticator(conf)  # the unit tests' conf is trusted
    ctxt = claimed(project_id=P1, user_id="legacy", roles=["admin"])

    assert authn.identify(ctxt, "secret_list") is ctxt
    authn.identify(ctxt, "secret_list")
    authn.identify(claimed(auth_token="tok-alice", user_id="upgraded"), "secret_list")

    assert authn.tokenless.snapshot() == [
        {"user_id": "legacy", "method": "secret_list", "requests": 2}]
    assert keystone.asked == []


def test_trusted_mode_warns_at_start(conf, migrated, master_key, caplog):
    from agent.service import AgentService

    conf.set_override("transport_url", "fake:/")
    caplog.set_level(logging.WARNING)
    service = AgentService(conf)
    service.start()
    try:
        assert any("strategy = trusted" in r.getMessage() and r.levelno == logging.WARNING
                   for r in caplog.records)
    finally:
        service.stop()
        service.wait()


def test_a_contexts_logging_values_mask_both_tokens():
    values = RequestContext(auth_token="user-secret", service_token="service-secret",
                            overwrite=False).get_logging_values()

    assert "user-secret" not in repr(values) and "service-secret" not in repr(values)


def test_what_can_be_answered_without_keystone(conf, keystone_mode):
    conf.set_override("token_cache_time", 300, group="keystone_authtoken")
    now = [1000.0]
    authn = Authenticator(conf)
    authn.known = TokenCache(10, clock=lambda: now[0])
    authn.identify(claimed(auth_token="tok-alice", service_token="tok-nova"), "key_list")
    with pytest.raises(exception.Unauthorized):
        authn.identify(claimed(auth_token="garbage"), "key_list")
    asked = list(keystone_mode.asked)

    assert authn.answers_from_memory({"auth_token": "tok-alice"})
    assert authn.answers_from_memory({"auth_token": "tok-alice", "service_token": "tok-nova"})
    assert authn.answers_from_memory({"auth_token": "garbage"})  # refused again at once
    assert authn.answers_from_memory({"project_id": P1})  # no token: refused at once
    assert not authn.answers_from_memory({"auth_token": "tok-bob"})
    assert not authn.answers_from_memory({"auth_token": "tok-alice", "service_token": "tok-x"})
    assert not authn.answers_from_memory({"auth_token": ["tok-alice"]})
    assert not authn.answers_from_memory({"auth_token": "t" * 9000})
    now[0] += 301
    assert not authn.answers_from_memory({"auth_token": "tok-alice"})
    # Looking asked Keystone nothing and kept nothing.
    assert keystone_mode.asked == asked
    assert len(authn.known) == 2


def test_a_trusted_agent_answers_every_context_from_memory(conf):
    assert Authenticator(conf).answers_from_memory({"auth_token": "anything"})
