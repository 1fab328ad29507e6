"""Slow vendordata targets cannot hold the fetcher: one deadline per exchange, lanes per target."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Iterator

import pytest

from agent.vendordata import exchange
from agent.vendordata.fetcher import Fetcher, build_body
from agent.vendordata.targets import Target
from tests.stub_server import (
    after, hang, json_reply, trickle, trickle_framed, trickle_headers)

MB = 1024 * 1024
CONNECT, READ = 0.5, 1.0
EXCHANGE = CONNECT + READ
# What a loaded two-core machine may add to an answer (three test workers
# and their agents); the behaviour these tests catch costs seconds more.
SLACK = 1.0

BODY = build_body({"uuid": "6a3f0c0e-4a8d-4b55-9c0b-1b2f3c4d5e6f", "project_id": "p1"}, [])


@pytest.fixture
def fetcher() -> Iterator[Fetcher]:
    # The overall deadline is far away: only the exchange deadline can cut.
    f = Fetcher(connect_timeout=CONNECT, read_timeout=READ, max_response_bytes=MB,
                deadline=30, max_per_target=2)
    yield f
    f.close()


@pytest.mark.parametrize("behaviour", [trickle(0.2), trickle_headers(0.2)],
                         ids=["body", "headers"])
def test_a_trickling_target_is_cut_at_connect_plus_read_timeout(server, fetcher, behaviour):
    url = server.route("/drip", behaviour)

    started = time.monotonic()
    result = fetcher.fetch_all([Target("drip", url)], BODY)["drip"]
    elapsed = time.monotonic() - started

    assert not result.ok and result.reason == "deadline exceeded"
    assert EXCHANGE - 0.1 <= elapsed < EXCHANGE + SLACK, f"took {elapsed:.2f} s"


@pytest.mark.parametrize("framing", ["http10", "close", "chunked", "length"])
def test_the_deadline_holds_however_the_trickled_answer_is_framed(server, fetcher, framing):
    # HTTP/1.0 and Connection: close answers take the socket away from the
    # connection object; the deadline must hold for them too.
    url = server.route("/drip", trickle_framed(0.2, framing))

    started = time.monotonic()
    result = fetcher.fetch_all([Target("drip", url)], BODY)["drip"]
    elapsed = time.monotonic() - started

    assert not result.ok and result.reason == "deadline exceeded"
    assert EXCHANGE - 0.1 <= elapsed < EXCHANGE + SLACK, f"took {elapsed:.2f} s"


def test_eight_http10_tricklers_neither_block_other_lookups_nor_hold_their_lane(server):
    good = server.route("/good", json_reply({"fine": True}))
    drip = server.route("/drip", trickle_framed(0.2, "http10"))
    fetcher = Fetcher(connect_timeout=CONNECT, read_timeout=READ, max_response_bytes=MB,
                      deadline=30, max_per_target=8)

    def lookup(targets: list[Target]) -> tuple[float, float, dict]:
        started = time.monotonic()
        results = fetcher.fetch_all(targets, BODY)
        return started, time.monotonic() - started, results

    try:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            # Eight lookups fill the trickler's lane...
            drips = [pool.submit(lookup, [Target("drip", drip)]) for _ in range(8)]
            time.sleep(0.2)
            # ...while other instances' lookups of another target go on.
            goods = [pool.submit(lookup, [Target("good", good)]) for _ in range(8)]
            for future in goods:
                _, elapsed, results = future.result()
                assert results["good"].ok and elapsed < SLACK, f"took {elapsed:.2f} s"
            for future in drips:
                _, elapsed, results = future.result()
                assert results["drip"].reason == "deadline exceeded"
                assert elapsed < EXCHANGE + SLACK, f"took {elapsed:.2f} s"

        # The lane is free again at once: the next lookup reaches the target.
        started, elapsed, results = lookup([Target("drip", drip)])
    finally:
        fetcher.close()

    assert len(server.seen("/drip")) == 9
    assert server.seen("/drip")[-1].at - started < SLACK
    assert results["drip"].reason == "deadline exceeded"
    assert elapsed < EXCHANGE + SLACK


def test_a_good_target_answers_in_its_normal_time_beside_a_trickling_one(server, fetcher):
    good = server.route("/good", after(0.1, json_reply({"fine": True})))
    drip = server.route("/drip", trickle(0.2))
    targets = [Target("good", good), Target("drip", drip)]

    started = time.monotonic()
    results = fetcher.fetch_all(targets, BODY)
    elapsed = time.monotonic() - started

    assert results["good"].ok and results["good"].data == {"fine": True}
    assert results["good"].elapsed < 0.1 + SLACK
    assert results["drip"].reason == "deadline exceeded"
    # The lookup answers when its slowest target is cut off, not later.
    assert elapsed < EXCHANGE + SLACK


def test_many_lookups_on_a_trickling_target_never_starve_a_good_one(server, fetcher):
    good = server.route("/good", json_reply({"fine": True}))
    drip = server.route("/drip", trickle(0.2))
    targets = [Target("good", good), Target("drip", drip)]

    def lookup() -> tuple[float, dict]:
        started = time.monotonic()
        results = fetcher.fetch_all(targets, BODY)
        return time.monotonic() - started, results

    # Four times as many lookups as the trickler's lane has threads.
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda _: lookup(), range(8)))

    for elapsed, results in outcomes:
        assert results["good"].ok, results["good"].reason
        assert results["good"].elapsed < SLACK
        assert not results["drip"].ok
        assert elapsed < EXCHANGE + SLACK, f"took {elapsed:.2f} s"
    assert len(server.seen("/good")) == 8


def test_close_cuts_exchanges_in_flight(server):
    url = server.route("/hang", hang())
    fetcher = Fetcher(connect_timeout=1, read_timeout=30, max_response_bytes=MB, deadline=30)
    outcome: dict = {}

    def lookup() -> None:
        outcome.update(fetcher.fetch_all([Target("h", url)], BODY))

    thread = threading.Thread(target=lookup)
    thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    fetcher.close()
    thread.join(5)

    assert not thread.is_alive()
    assert time.monotonic() - started < 0.5
    assert not outcome["h"].ok


class _LateWatchdog(exchange.Watchdog):
    """A watchdog whose thread has not run yet when the deadline passes."""

    def watch(self, deadline_at):
        return exchange._Watch(deadline_at)


def _silent_exchange(server, read_timeout: float, deadline_in: float) -> str:
    """The reason an exchange with a target that never answers fails for."""
    url = server.route("/silent", hang())
    with pytest.raises(exchange.ExchangeFailed) as failed:
        exchange.post(exchange.Connections(), _LateWatchdog(), url, b"{}", {},
                      connect_timeout=CONNECT, read_timeout=read_timeout,
                      deadline_at=time.monotonic() + deadline_in, max_bytes=MB)
    return failed.value.reason


def test_a_read_ended_by_the_deadline_is_reported_as_the_deadline_before_the_watchdog_runs(
        server):
    assert _silent_exchange(server, read_timeout=5.0, deadline_in=0.3) == "deadline exceeded"


def test_a_silent_target_within_the_deadline_is_a_read_timeout(server):
    assert _silent_exchange(server, read_timeout=0.3, deadline_in=5.0) == "read timeout"
