"""A target that refuses the service token: a new token, one more try.

Keystone is played by the stub server issuing a new token at each
request (``tok-1``, ``tok-2``, ...), and the targets tell the tokens
apart, so a test sees that a new token was sent, not the old one again.
The token comes from a real keystoneauth1 session and password plugin,
as in the agent.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Iterator

import pytest
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from agent.vendordata import auth
from agent.vendordata.fetcher import Fetcher, build_body
from agent.vendordata.targets import Target
from tests.stub_server import StubServer, accept_only, json_reply, keystone_issuing, raw_reply

PASSWORD = "renewal-keystone-password-31ab"
MB = 1024 * 1024
BODY = build_body({"uuid": "6a3f0c0e-4a8d-4b55-9c0b-1b2f3c4d5e6f", "project_id": "p1"}, [])


def tokens_seen(server: StubServer, path: str) -> list[str | None]:
    return [seen.headers.get("X-Auth-Token") for seen in server.seen(path)]


@pytest.fixture
def token(server) -> auth.ServiceToken:
    server.route("/v3/auth/tokens", keystone_issuing("tok"))
    plugin = v3.Password(auth_url=server.url("/v3"), username="custos", password=PASSWORD,
                         user_domain_name="Default", project_name="service",
                         project_domain_name="Default")
    return auth.ServiceToken(ks_session.Session(auth=plugin))


@pytest.fixture
def fetcher(token) -> Iterator[Fetcher]:
    f = Fetcher(connect_timeout=1, read_timeout=2, max_response_bytes=MB, deadline=4,
                headers=token.headers, renew=token.renew)
    yield f
    f.close()


def test_a_refused_token_is_replaced_and_the_target_asked_once_more(server, fetcher):
    url = server.route("/a", accept_only("tok-2", {"from": "a"}))

    result = fetcher.fetch_all([Target("a", url)], BODY)["a"]

    assert result.ok and result.data == {"from": "a"}
    assert tokens_seen(server, "/a") == ["tok-1", "tok-2"]
    assert len(server.seen("/v3/auth/tokens")) == 2


def test_the_new_token_serves_later_lookups_and_other_targets(server, fetcher):
    a = server.route("/a", accept_only("tok-2", {"from": "a"}))
    b = server.route("/b", json_reply({"from": "b"}))

    fetcher.fetch_all([Target("a", a), Target("b", b)], BODY)
    later = fetcher.fetch_all([Target("a", a), Target("b", b)], BODY)

    assert later["a"].ok and later["b"].ok
    assert tokens_seen(server, "/a") == ["tok-1", "tok-2", "tok-2"]
    # b accepted the first token and was asked once per lookup.
    assert tokens_seen(server, "/b") == ["tok-1", "tok-2"]


def test_a_second_401_is_the_targets_failure(server, fetcher):
    url = server.route("/a", accept_only("no such token", {}))

    result = fetcher.fetch_all([Target("a", url)], BODY)["a"]

    assert not result.ok and result.reason == "HTTP 401" and result.status == 401
    assert tokens_seen(server, "/a") == ["tok-1", "tok-2"]


def test_a_target_refusing_every_token_does_not_make_each_lookup_ask_keystone(
        server, fetcher):
    url = server.route("/a", accept_only("no such token", {}))

    for _ in range(5):
        assert not fetcher.fetch_all([Target("a", url)], BODY)["a"].ok

    # The first token and one renewal; later lookups fail on the fresh token.
    assert len(server.seen("/v3/auth/tokens")) == 2
    assert tokens_seen(server, "/a") == ["tok-1", "tok-2"] + ["tok-2"] * 4


def test_lookups_refused_the_same_token_share_one_renewal(server, fetcher, token):
    url = server.route("/a", accept_only("tok-2", {"ok": True}))
    token.headers()  # tok-1, held by every lookup below

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: fetcher.fetch_all([Target("a", url)], BODY)["a"],
                                range(8)))

    assert all(r.ok for r in results), [r.reason for r in results]
    assert len(server.seen("/v3/auth/tokens")) == 2
    seen = tokens_seen(server, "/a")
    # Each lookup ended on tok-2; those started after the renewal began with it.
    assert seen.count("tok-2") == 8 and set(seen) == {"tok-1", "tok-2"}


def test_keystone_failing_the_renewal_fails_the_target_without_secrets(
        server, fetcher, caplog):
    url = server.route("/a", accept_only("tok-2", {}))
    caplog.set_level(logging.DEBUG)
    fetcher.fetch_all([], BODY)
    assert fetcher._headers is not None
    fetcher._headers()  # tok-1 obtained; Keystone now fails
    server.route("/v3/auth/tokens", raw_reply(500, PASSWORD.encode()))

    result = fetcher.fetch_all([Target("a", url)], BODY)["a"]

    assert not result.ok and result.reason == "could not renew the service token"
    assert tokens_seen(server, "/a") == ["tok-1"]
    assert PASSWORD not in caplog.text and "tok-1" not in caplog.text


def test_without_a_token_source_a_401_fails_at_once(server):
    url = server.route("/a", accept_only("tok-2", {}))

    with Fetcher(1, 2, MB, 4) as f:
        result = f.fetch_all([Target("a", url)], BODY)["a"]

    assert result.reason == "HTTP 401" and len(server.seen("/a")) == 1
