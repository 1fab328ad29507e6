"""The tests' Keystone answers as custos will rely on (tests/functional/keystone.py).

Each token is validated the way keystonemiddleware does for custos: by
the agent's own service user, ``GET /v3/auth/tokens`` with the token in
``X-Subject-Token``, through keystoneauth1.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import loading
from keystoneauth1 import session as ks_session
from keystoneauth1.plugin import BaseAuthPlugin

from tests.functional.keystone import KeystoneServer


# Options of [keystone_authtoken] and [service_user] that are not the
# password plugin's own.
NOT_PLUGIN_OPTIONS = {"auth_type", "www_authenticate_uri", "interface",
                      "send_service_user_token"}


def session_from(options: dict[str, str]) -> ks_session.Session:
    """A keystoneauth1 session authenticated by a configuration section's options."""
    auth: BaseAuthPlugin = loading.get_plugin_loader(options["auth_type"]).load_from_options(
        **{name: value for name, value in options.items() if name not in NOT_PLUGIN_OPTIONS})
    return ks_session.Session(auth=auth)


@pytest.fixture(scope="module")
def custos(keystone: KeystoneServer) -> ks_session.Session:
    """The agent's own service user, as its ``[keystone_authtoken]`` options authenticate."""
    return session_from(keystone.agent_options())


def validate(keystone: KeystoneServer, custos: ks_session.Session, token: str,
             allow_expired: bool = False) -> tuple[int, dict[str, Any]]:
    """``GET /v3/auth/tokens`` as the service user; returns the status and the token body."""
    response = custos.get(f"{keystone.url}/auth/tokens", headers={"X-Subject-Token": token},
                          params={"allow_expired": 1} if allow_expired else None,
                          raise_exc=False)
    body = response.json().get("token", {}) if response.status_code == 200 else {}
    return response.status_code, body


def role_names(body: dict[str, Any]) -> list[str]:
    return sorted(role["name"] for role in body.get("roles", []))


def test_member_token_carries_project_and_implied_roles(keystone: KeystoneServer,
                                                        custos: ks_session.Session) -> None:
    status, body = validate(keystone, custos, keystone.token("alice", "p1"))
    assert status == 200
    assert body["project"]["id"] == keystone.project_id("p1")
    assert body["user"]["id"] == keystone.user_id("alice")
    assert role_names(body) == ["member", "reader"]


def test_project_admin_has_every_implied_role_and_no_system_scope(
        keystone: KeystoneServer, custos: ks_session.Session) -> None:
    status, body = validate(keystone, custos, keystone.token("dave", "p1"))
    assert status == 200
    assert body["project"]["id"] == keystone.project_id("p1")
    assert role_names(body) == ["admin", "manager", "member", "reader"]
    assert "system" not in body


def test_system_admin_token_is_system_scoped(keystone: KeystoneServer,
                                             custos: ks_session.Session) -> None:
    status, body = validate(keystone, custos, keystone.token("admin", system=True))
    assert status == 200
    assert body["system"] == {"all": True}
    assert "project" not in body
    assert "admin" in role_names(body)


def test_domain_scoped_token_has_no_project(keystone: KeystoneServer,
                                           custos: ks_session.Session) -> None:
    status, body = validate(keystone, custos, keystone.token("eve", domain="Default"))
    assert status == 200
    assert "project" not in body
    assert body["domain"]["id"] == "default"
    assert role_names(body) == ["member", "reader"]


def test_calling_services_have_the_service_role(keystone: KeystoneServer,
                                                custos: ks_session.Session) -> None:
    for name in ("nova", "cinder"):
        options = keystone.service_user_options(name)
        assert options["send_service_user_token"] == "true"
        token = session_from(options).get_token()
        assert token is not None
        status, body = validate(keystone, custos, token)
        assert status == 200
        assert body["project"]["id"] == keystone.project_id("service")
        assert role_names(body) == ["service"]
    status, body = validate(keystone, custos, keystone.token("auditor", "service"))
    assert role_names(body) == ["service_auditor"]


def test_service_user_validates_with_get_not_head(keystone: KeystoneServer,
                                                  custos: ks_session.Session) -> None:
    token = keystone.token("alice", "p1")
    head = custos.head(f"{keystone.url}/auth/tokens", headers={"X-Subject-Token": token},
                       raise_exc=False)
    assert head.status_code == 403
    assert validate(keystone, custos, token)[0] == 200


def test_catalog_names_the_internal_identity_endpoint(keystone: KeystoneServer,
                                                      custos: ks_session.Session) -> None:
    assert custos.get_endpoint(service_type="identity", interface="internal") == keystone.url
    assert keystone.agent_options()["interface"] == "internal"


def test_revoked_token_is_not_found(keystone: KeystoneServer,
                                    custos: ks_session.Session) -> None:
    token = keystone.token("bob", "p2")
    assert validate(keystone, custos, token)[0] == 200
    keystone.revoke(token)
    assert validate(keystone, custos, token)[0] == 404
    assert validate(keystone, custos, token, allow_expired=True)[0] == 404


def test_expired_token_is_valid_only_with_allow_expired(keystone: KeystoneServer,
                                                        custos: ks_session.Session) -> None:
    token = keystone.expired_token("alice", "p1")
    assert validate(keystone, custos, token)[0] == 404
    status, body = validate(keystone, custos, token, allow_expired=True)
    assert status == 200
    assert datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00")) < \
        datetime.now(timezone.utc)
    assert body["project"]["id"] == keystone.project_id("p1")
    assert role_names(body) == ["member", "reader"]
    # Other tokens keep the usual lifetime.
    status, body = validate(keystone, custos, keystone.token("alice", "p1"))
    expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert (expires - datetime.now(timezone.utc)).total_seconds() > 3000


def test_tokens_stay_valid_across_an_outage(keystone: KeystoneServer,
                                            custos: ks_session.Session) -> None:
    token = keystone.token("alice", "p1")
    port = keystone.port
    with keystone.outage():
        with pytest.raises(ks_exceptions.ConnectFailure):
            validate(keystone, custos, token)
    assert keystone.port == port
    status, body = validate(keystone, custos, token)
    assert status == 200
    assert body["project"]["id"] == keystone.project_id("p1")
