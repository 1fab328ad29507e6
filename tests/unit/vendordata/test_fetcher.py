"""Fetcher against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import gzip
import logging
import socket
import time
import tracemalloc
import zlib
from collections.abc import Iterator

import pytest

from agent import exception
from agent.vendordata.fetcher import Fetcher, build_body, parse_cache_control
from agent.vendordata.targets import Target
from tests.stub_server import (
    StreamLog, after, close_connection, gzip_reply, hang, json_reply, raw_reply, stream,
    trickle, truncated)

TOKEN = "gAAAAAB-very-secret-token"
MB = 1024 * 1024

INSTANCE = {
    "uuid": "6a3f0c0e-4a8d-4b55-9c0b-1b2f3c4d5e6f",
    "project_id": "b1c2d3",
    "image_id": "0e4f5a6b",
    "hostname": "vm-1",
    "user_data": "I2Nsb3VkLWNvbmZpZw==",
    "metadata": {"role": "web"},
}


@pytest.fixture
def fetcher() -> Iterator[Fetcher]:
    f = Fetcher(connect_timeout=1, read_timeout=2, max_response_bytes=MB,
                deadline=3, headers=lambda: {"X-Auth-Token": TOKEN})
    yield f
    f.close()


def body() -> dict:
    return build_body(INSTANCE, ["member", "reader"])


# -- body ---------------------------------------------------------------------

def test_body_has_novas_keys_and_comma_joined_roles():
    assert build_body(INSTANCE, ["member", "reader"]) == {
        "project-id": "b1c2d3",
        "instance-id": INSTANCE["uuid"],
        "image-id": "0e4f5a6b",
        "user-data": "I2Nsb3VkLWNvbmZpZw==",
        "hostname": "vm-1",
        "metadata": {"role": "web"},
        "boot-roles": "member,reader",
    }


def test_body_without_roles_sends_empty_string():
    assert build_body(INSTANCE, [])["boot-roles"] == ""


def test_body_fills_optional_fields():
    given = build_body({"uuid": "u", "project_id": "p"}, [])
    assert given["image-id"] is None
    assert given["user-data"] is None
    assert given["hostname"] is None
    assert given["metadata"] == {}


def test_body_requires_uuid():
    with pytest.raises(exception.InvalidInput) as exc:
        build_body({"project_id": "p"}, [])
    assert "instance.uuid" in str(exc.value)


def test_request_carries_body_and_headers(server, fetcher):
    url = server.route("/a", json_reply({"k": "v"}))

    results = fetcher.fetch_all([Target("a", url)], body())

    assert results["a"].ok and results["a"].data == {"k": "v"}
    [seen] = server.seen("/a")
    assert seen.method == "POST"
    assert seen.json() == body()
    assert seen.headers["Accept"] == "application/json"
    assert seen.headers["Content-Type"] == "application/json"


def test_token_header_is_what_headers_returned_called_once(server):
    calls = []

    def headers():
        calls.append(1)
        return {"X-Auth-Token": f"{TOKEN}-{len(calls)}"}

    a = server.route("/a", json_reply({}))
    b = server.route("/b", json_reply({}))
    with Fetcher(1, 2, MB, 3, headers=headers) as f:
        f.fetch_all([Target("a", a), Target("b", b)], body())

    assert len(calls) == 1
    assert {s.headers["X-Auth-Token"] for s in server.requests} == {f"{TOKEN}-1"}


def test_headers_failure_asks_nobody(server):
    def headers():
        raise RuntimeError(f"auth failed for password {TOKEN}")

    url = server.route("/a", json_reply({}))
    with Fetcher(1, 2, MB, 3, headers=headers) as f:
        results = f.fetch_all([Target("a", url)], body())

    assert not results["a"].ok
    assert TOKEN not in results["a"].reason
    assert server.requests == []


# -- concurrency and time ----------------------------------------------------

def test_targets_are_asked_concurrently(server, fetcher):
    a = server.route("/a", after(1.0, json_reply({"n": 1})))
    b = server.route("/b", after(1.0, json_reply({"n": 2})))

    start = time.monotonic()
    results = fetcher.fetch_all([Target("a", a), Target("b", b)], body())
    elapsed = time.monotonic() - start

    assert results["a"].data == {"n": 1} and results["b"].data == {"n": 2}
    assert elapsed < 1.6


def test_hanging_target_hits_read_timeout_and_is_not_retried(server):
    url = server.route("/hang", hang())

    with Fetcher(1, 0.5, MB, 3, retries=2) as f:
        start = time.monotonic()
        results = f.fetch_all([Target("h", url)], body())
        elapsed = time.monotonic() - start

    assert not results["h"].ok
    assert results["h"].reason == "read timeout"
    assert elapsed < 1.0
    assert len(server.seen("/hang")) == 1


def test_deadline_returns_on_time_and_keeps_good_answers(server):
    slow = server.route("/hang", hang())
    fast = server.route("/fast", json_reply({"ok": True}))

    with Fetcher(1, 10, MB, deadline=0.5) as f:
        start = time.monotonic()
        results = f.fetch_all([Target("slow", slow), Target("fast", fast)], body())
        elapsed = time.monotonic() - start

    assert elapsed < 0.5 + 0.3
    assert results["fast"].ok and results["fast"].data == {"ok": True}
    assert not results["slow"].ok
    assert results["slow"].reason == "deadline exceeded"


def test_trickling_target_is_cut_at_the_deadline(server):
    url = server.route("/drip", trickle(0.05))

    with Fetcher(1, 10, MB, deadline=0.5) as f:
        start = time.monotonic()
        results = f.fetch_all([Target("drip", url)], body())
        elapsed = time.monotonic() - start

    assert not results["drip"].ok
    assert "deadline" in results["drip"].reason
    assert elapsed < 0.5 + 0.3


# -- answers -------------------------------------------------------------------

def test_server_error_fails_without_retry(server, fetcher):
    url = server.route("/err", raw_reply(500, b"boom"))

    result = fetcher.fetch_all([Target("e", url)], body())["e"]

    assert not result.ok
    assert "500" in result.reason and result.status == 500
    assert len(server.seen("/err")) == 1


def test_redirect_is_not_followed(server, fetcher):
    elsewhere = server.route("/elsewhere", json_reply({}))
    url = server.route("/moved", raw_reply(302, b"", {"Location": elsewhere}))

    result = fetcher.fetch_all([Target("m", url)], body())["m"]

    assert not result.ok and "302" in result.reason
    assert server.seen("/elsewhere") == []


def test_html_answer_fails(server, fetcher):
    url = server.route("/html", raw_reply(
        200, b"<html><body>hello</body></html>", {"Content-Type": "text/html"}))

    result = fetcher.fetch_all([Target("h", url)], body())["h"]

    assert not result.ok and result.reason == "answer is not JSON"


@pytest.mark.parametrize("answer", [[1, "two", {"three": 3}], "a string", 42, 4.5, None,
                                    True, {"nested": {"list": [None]}}],
                         ids=["list", "string", "int", "float", "null", "bool", "object"])
def test_any_json_value_is_returned_as_it_came(server, fetcher, answer):
    url = server.route("/v", json_reply(answer))

    result = fetcher.fetch_all([Target("v", url)], body())["v"]

    assert result.ok and result.reason is None
    assert result.data == answer and type(result.data) is type(answer)


def test_a_gzipped_answer_is_decoded(server, fetcher):
    answer = {"cloud-init": "#cloud-config\n" + "packages: [x]\n" * 200, "n": [1, None]}
    url = server.route("/gz", gzip_reply(answer))

    result = fetcher.fetch_all([Target("gz", url)], body())["gz"]

    assert result.ok and result.data == answer
    assert server.seen("/gz")[0].headers["Accept-Encoding"] == "gzip"


def test_an_empty_gzipped_answer_is_an_empty_object(server, fetcher):
    url = server.route("/gz", gzip_reply(raw=b""))

    result = fetcher.fetch_all([Target("gz", url)], body())["gz"]

    assert result.ok and result.data == {}


def test_a_gzip_bomb_is_cut_at_the_bound_without_inflating_it(server):
    # 64 MiB of zeros compress to about 64 KiB: small on the wire, far over
    # the bound once inflated.
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    piece = b"0," * (MB // 2)
    bomb = packer.compress(b"[") + b"".join(packer.compress(piece) for _ in range(64))
    bomb += packer.compress(b"0]") + packer.flush()
    assert len(bomb) < MB // 8
    url = server.route("/bomb", raw_reply(200, bomb, {"Content-Encoding": "gzip"}))
    tracemalloc.start()
    try:
        with Fetcher(1, 5, MB, 6) as f:
            result = f.fetch_all([Target("bomb", url)], body())["bomb"]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert not result.ok and result.reason == f"answer larger than {MB} bytes"
    # The stub server's compressed copy and at most the bound, decoded.
    assert peak < 4 * MB, f"peak {peak / MB:.1f} MiB"


def test_a_truncated_or_corrupt_gzip_answer_fails(server, fetcher):
    whole = gzip.compress(b'{"k": "' + b"v" * 5000 + b'"}')
    server.route("/cut", raw_reply(200, whole[:-12], {"Content-Encoding": "gzip"}))
    server.route("/bad", raw_reply(200, b"not gzip at all", {"Content-Encoding": "gzip"}))
    server.route("/br", raw_reply(200, b"{}", {"Content-Encoding": "br"}))
    targets = [Target(n, server.url(f"/{n}")) for n in ("cut", "bad", "br")]

    results = fetcher.fetch_all(targets, body())

    assert {n: r.reason for n, r in results.items()} == {
        n: "answer could not be decoded" for n in ("cut", "bad", "br")}


@pytest.mark.parametrize("status", [200, 201, 204])
def test_empty_2xx_is_empty_object(server, fetcher, status):
    url = server.route("/empty", raw_reply(status, b""))

    result = fetcher.fetch_all([Target("e", url)], body())["e"]

    assert result.ok and result.data == {} and result.status == status


def test_huge_streamed_answer_is_refused_without_reading_it_all(server, fetcher):
    log = StreamLog()
    # Paced so that sending all 10 MB would take about 3 s.
    url = server.route("/big", stream(10 * MB, log, chunk=64 * 1024, pause=0.02))

    start = time.monotonic()
    result = fetcher.fetch_all([Target("big", url)], body())["big"]
    elapsed = time.monotonic() - start

    assert not result.ok and "larger than" in result.reason
    assert elapsed < 1.0
    time.sleep(0.2)  # let the server notice the closed connection
    assert not log.finished
    assert log.sent < 2 * MB


def test_huge_declared_answer_is_refused_from_its_headers(server, fetcher):
    log = StreamLog()
    url = server.route("/big", stream(10 * MB, log, pause=0.02, declare_length=True))

    result = fetcher.fetch_all([Target("big", url)], body())["big"]

    assert not result.ok and "larger than" in result.reason
    time.sleep(0.2)
    assert log.sent < 2 * MB


def test_answer_at_the_limit_is_accepted(server):
    payload = b'{"k": "' + b"x" * 1000 + b'"}'
    url = server.route("/fit", raw_reply(200, payload))

    with Fetcher(1, 2, len(payload), 3) as f:
        result = f.fetch_all([Target("fit", url)], body())["fit"]

    assert result.ok and len(result.data["k"]) == 1000


def test_connection_closed_mid_answer_fails(server, fetcher):
    url = server.route("/cut", truncated(1000, b'{"partial": '))

    result = fetcher.fetch_all([Target("cut", url)], body())["cut"]

    assert not result.ok
    assert "closed" in result.reason


def test_a_request_the_target_read_in_full_is_never_posted_again(server):
    # The target reads the whole request, then closes without a word: it
    # may have acted on it, so asking again could do it twice.
    url = server.route("/close", close_connection())

    with Fetcher(1, 2, MB, 3, retries=2) as f:
        result = f.fetch_all([Target("c", url)], body())["c"]
        time.sleep(0.2)

    assert not result.ok and result.reason == "connection closed without an answer"
    assert len(server.seen("/close")) == 1


def test_a_request_that_could_not_be_sent_is_retried(server, monkeypatch):
    url = server.route("/a", json_reply({"n": 1}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        refused = s.getsockname()[1]
    with Fetcher(1, 2, MB, 3, retries=2) as f:
        real_open = f._connections.open
        opened = []

        def first_refused(scheme, host, port, timeout):
            # The first connection goes to a port nobody listens on.
            opened.append(port)
            return real_open(scheme, host, refused if len(opened) == 1 else port, timeout)

        monkeypatch.setattr(f._connections, "open", first_refused)
        result = f.fetch_all([Target("a", url)], body())["a"]

    assert result.ok and result.data == {"n": 1}
    assert len(opened) == 2 and len(server.seen("/a")) == 1


def test_a_kept_connection_the_target_closed_is_replaced_before_sending(server):
    def answer_then_drop(h) -> None:
        # A keep-alive answer, then the target closes the connection anyway.
        json_reply({"n": 1})(h)
        h.close_connection = True

    url = server.route("/a", answer_then_drop)
    # No retries: only noticing the closed connection before sending saves
    # the second lookup.
    with Fetcher(1, 2, MB, 3, retries=0) as fetcher:
        fetcher.fetch_all([Target("a", url)], body())
        time.sleep(0.2)

        result = fetcher.fetch_all([Target("a", url)], body())["a"]

    assert result.ok and result.data == {"n": 1}
    seen = server.seen("/a")
    assert len(seen) == 2 and seen[0].client_port != seen[1].client_port


def test_refused_connection_fails_within_deadline():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nothing listens on the port now.
    with Fetcher(1, 2, MB, 2, retries=3) as f:
        start = time.monotonic()
        result = f.fetch_all([Target("x", f"http://127.0.0.1:{port}/")], body())["x"]
        elapsed = time.monotonic() - start

    assert not result.ok and result.reason == "connection failed"
    assert elapsed < 2.3


def test_connections_are_reused_between_lookups(server, fetcher):
    url = server.route("/a", json_reply({}))

    fetcher.fetch_all([Target("a", url)], body())
    fetcher.fetch_all([Target("a", url)], body())

    ports = {s.client_port for s in server.seen("/a")}
    assert len(ports) == 1


def test_cookies_do_not_travel_between_lookups(server, fetcher):
    url = server.route("/c", json_reply({}, headers={"Set-Cookie": "sid=abc"}))

    fetcher.fetch_all([Target("c", url)], body())
    fetcher.fetch_all([Target("c", url)], body())

    assert all("Cookie" not in s.headers for s in server.seen("/c"))


# -- cache hints -----------------------------------------------------------------

def test_max_age_becomes_ttl(server, fetcher):
    url = server.route("/m", json_reply({}, headers={"Cache-Control": "public, max-age=30"}))

    assert fetcher.fetch_all([Target("m", url)], body())["m"].ttl == 30


def test_no_store_becomes_zero_ttl(server, fetcher):
    url = server.route("/n", json_reply({}, headers={"Cache-Control": "no-store"}))

    assert fetcher.fetch_all([Target("n", url)], body())["n"].ttl == 0


def test_no_hint_means_default_ttl(server, fetcher):
    url = server.route("/d", json_reply({}))

    assert fetcher.fetch_all([Target("d", url)], body())["d"].ttl is None


@pytest.mark.parametrize("header, ttl", [
    (None, None),
    ("", None),
    ("max-age=60", 60),
    ("MAX-AGE=\"15\"", 15),
    ("max-age=0", 0),
    ("max-age=abc", None),
    ("max-age=-5", None),
    ("max-age=60, no-store", 0),
    ("private, no-cache", 0),
    ("public", None),
])
def test_parse_cache_control(header, ttl):
    assert parse_cache_control(header) == ttl


# -- secrets stay out -----------------------------------------------------------

def test_failures_never_show_token_or_url_credentials(server, fetcher, caplog):
    secret_url = server.url("/err").replace("http://", "http://user:pw-secret@")
    server.route("/err", raw_reply(500, TOKEN.encode()))
    caplog.set_level(logging.DEBUG, logger="agent")

    results = fetcher.fetch_all(
        [Target("err", secret_url),
         Target("text", server.route("/text", raw_reply(200, b"<" + TOKEN.encode())))],
        body())

    text = " ".join(r.reason or "" for r in results.values()) + caplog.text
    assert not any(r.ok for r in results.values())
    assert TOKEN not in text and "pw-secret" not in text


def test_closed_fetcher_refuses_work():
    f = Fetcher(1, 1, MB, 1)
    f.close()
    with pytest.raises(RuntimeError):
        f.fetch_all([Target("a", "http://127.0.0.1:1/")], body())


def test_no_targets_no_requests(fetcher):
    assert fetcher.fetch_all([], body()) == {}
