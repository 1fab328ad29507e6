"""The per-agent vendordata cache, on a fake clock."""

from __future__ import annotations

import threading

import pytest

from agent.vendordata.cache import MISSING, VendordataCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_entry_lives_for_the_default_ttl(clock):
    cache = VendordataCache(default_ttl=60, clock=clock)

    cache.put("t", "i1", {"a": 1}, None)

    clock.advance(59.9)
    assert cache.get("t", "i1") == {"a": 1}
    clock.advance(0.1)
    assert cache.get("t", "i1") is MISSING
    assert len(cache) == 0


def test_explicit_ttl_wins_over_default(clock):
    cache = VendordataCache(default_ttl=60, clock=clock)

    cache.put("t", "i1", {"a": 1}, 5)

    clock.advance(5)
    assert cache.get("t", "i1") is MISSING


def test_zero_ttl_stores_nothing_and_drops_older_entry(clock):
    cache = VendordataCache(default_ttl=60, clock=clock)
    cache.put("t", "i1", {"old": True}, None)

    cache.put("t", "i1", {"new": True}, 0)

    assert cache.get("t", "i1") is MISSING
    assert len(cache) == 0


def test_default_ttl_zero_disables_caching(clock):
    cache = VendordataCache(default_ttl=0, clock=clock)

    cache.put("t", "i1", {"a": 1}, None)

    assert cache.get("t", "i1") is MISSING


def test_entries_are_per_target_and_instance(clock):
    cache = VendordataCache(default_ttl=60, clock=clock)

    cache.put("t1", "i1", {"v": 1}, None)
    cache.put("t2", "i1", {"v": 2}, None)
    cache.put("t1", "i2", {"v": 3}, None)

    assert cache.get("t1", "i1") == {"v": 1}
    assert cache.get("t2", "i1") == {"v": 2}
    assert cache.get("t1", "i2") == {"v": 3}
    assert cache.get("t2", "i2") is MISSING


def test_purge_instance_drops_only_that_instance(clock):
    cache = VendordataCache(default_ttl=60, clock=clock)
    cache.put("t1", "i1", {}, None)
    cache.put("t2", "i1", {}, None)
    cache.put("t1", "i2", {"kept": True}, None)

    assert cache.purge_instance("i1") == 2

    assert cache.get("t1", "i1") is MISSING and cache.get("t2", "i1") is MISSING
    assert cache.get("t1", "i2") == {"kept": True}
    assert cache.purge_instance("i1") == 0


def test_oldest_entry_is_evicted_first(clock):
    cache = VendordataCache(default_ttl=60, max_entries=2, clock=clock)
    cache.put("t", "i1", {"n": 1}, None)
    cache.put("t", "i2", {"n": 2}, None)

    cache.put("t", "i3", {"n": 3}, None)

    assert cache.get("t", "i1") is MISSING
    assert cache.get("t", "i2") == {"n": 2}
    assert cache.get("t", "i3") == {"n": 3}
    assert len(cache) == 2
    # The evicted entry left the per-instance index too.
    assert cache.purge_instance("i1") == 0


def test_answers_nobody_asks_for_again_leave_once_expired(clock):
    """A cache that serves a steady stream of new instances holds about a TTL's worth."""
    cache = VendordataCache(default_ttl=60, clock=clock)

    for n in range(1000):
        cache.put("t", f"i{n}", {"n": n}, None)
        clock.advance(1)

    # Only the answers stored in the last 60 seconds are left, and the bytes with them.
    assert len(cache) == 60
    assert cache.get("t", "i941") == {"n": 941}
    one = VendordataCache(default_ttl=60, clock=clock)
    one.put("t", "i0", {"n": 0}, None)
    assert cache.size_bytes < 70 * one.size_bytes


def test_replacing_an_entry_makes_it_newest(clock):
    cache = VendordataCache(default_ttl=60, max_entries=2, clock=clock)
    cache.put("t", "i1", {"n": 1}, None)
    cache.put("t", "i2", {"n": 2}, None)
    cache.put("t", "i1", {"n": 11}, None)

    cache.put("t", "i3", {"n": 3}, None)

    assert cache.get("t", "i1") == {"n": 11}
    assert cache.get("t", "i2") is MISSING


def test_callers_cannot_change_stored_answers(clock):
    cache = VendordataCache(default_ttl=60, clock=clock)
    given = {"list": [1], "nested": {"k": "v"}}
    cache.put("t", "i1", given, None)

    given["list"].append(2)
    got = cache.get("t", "i1")
    got["nested"]["k"] = "changed"

    assert cache.get("t", "i1") == {"list": [1], "nested": {"k": "v"}}


@pytest.mark.parametrize("kwargs", [{"default_ttl": -1}, {"default_ttl": 1, "max_entries": 0}])
def test_bad_construction(kwargs):
    with pytest.raises(ValueError):
        VendordataCache(**kwargs)


def test_negative_ttl_is_refused(clock):
    with pytest.raises(ValueError):
        VendordataCache(60, clock=clock).put("t", "i", {}, -1)


def test_concurrent_use_keeps_the_bound(clock):
    cache = VendordataCache(default_ttl=60, max_entries=50, clock=clock)

    def work(n: int) -> None:
        for i in range(500):
            cache.put(f"t{n}", f"i{i}", {"i": i}, None)
            cache.get(f"t{n}", f"i{i}")
            if i % 7 == 0:
                cache.purge_instance(f"i{i - 3}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)

    assert len(cache) <= 50


@pytest.mark.parametrize("answer", [None, [1, None], "text", 0, False],
                         ids=["null", "list", "string", "zero", "false"])
def test_any_json_answer_is_kept_and_told_apart_from_a_miss(clock, answer):
    cache = VendordataCache(default_ttl=60, clock=clock)
    cache.put("t", "i1", answer, None)

    assert cache.get("t", "i1") == answer and cache.get("t", "i1") is not MISSING
    assert cache.get("t", "i2") is MISSING
