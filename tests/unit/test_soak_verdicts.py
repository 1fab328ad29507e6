"""The soak's verdicts fail on what they are meant to catch (benchmarks/soak_verdicts.py)."""

from __future__ import annotations

from pathlib import Path

from benchmarks import soak_verdicts as verdicts
from benchmarks.soak_calls import Call
from benchmarks.soak_samples import Sample

# A 100-second warm-up, then thirds of 100 seconds.
WINDOW = verdicts.Window(warmup=100, end=400)


def samples(rss: list[int], threads: int = 20, queue: list[int] | None = None) -> list[Sample]:
    """One sample every 10 s from the end of the warm-up, one per value of ``rss``."""
    taken = []
    for n, value in enumerate(rss):
        taken.append(Sample(at=100 + 10 * n, requests=100 * n, agents={"agent-1": {
            "rss_kib": value, "threads": threads, "open_files": 30, "log_bytes": 0,
            "cpu_ms": 4 * 100 * n}}, queues={"custos-agent": (queue or [0] * len(rss))[n]}))
    return taken


def test_memory_that_keeps_rising_is_not_flat():
    steady = verdicts.flat(samples([100_000] * 30), WINDOW)
    rising = verdicts.flat(samples([100_000 + 1_000 * n for n in range(30)]), WINDOW)

    assert steady.met
    assert not rising.met
    assert any("rss_kib" in line and "not flat" in line for line in rising.lines)


def test_a_count_may_rise_by_five_percent_and_one():
    # 20 threads: up to 20 * 1.05 + 1 = 22 is flat, 23 is not.
    allowed = samples([100_000] * 30)
    for sample in allowed[20:]:
        sample.agents["agent-1"]["threads"] = 22
    more = samples([100_000] * 30)
    for sample in more[20:]:
        sample.agents["agent-1"]["threads"] = 23

    assert verdicts.flat(allowed, WINDOW).met
    assert not verdicts.flat(more, WINDOW).met


def test_a_queue_that_fills_up_is_growing_and_one_that_stays_low_is_not():
    low = samples([1] * 30, queue=[n % 5 for n in range(30)])
    filling = samples([1] * 30, queue=[10 * n for n in range(30)])

    assert verdicts.queues(low, WINDOW).met
    assert not verdicts.queues(filling, WINDOW).met


def calls(method: str, first: float, last: float, count: int = 200) -> list[Call]:
    return ([Call(100 + n * 0.4, first, method, "ok") for n in range(count)]
            + [Call(300 + n * 0.4, last, method, "ok") for n in range(count)])


def test_p99_is_judged_against_the_first_third_with_enough_calls():
    assert verdicts.p99(calls("secret_get_value", 0.010, 0.014), WINDOW).met
    slower = verdicts.p99(calls("secret_get_value", 0.010, 0.016), WINDOW)
    assert not slower.met
    # Too few calls for a p99: shown, not judged.
    assert verdicts.p99(calls("key_create_pair", 0.2, 0.9, count=20), WINDOW).met


def test_errors_fail_on_a_timeout_or_an_untyped_error_but_not_an_expected_one():
    expected = [Call(150, 0.01, "secret_get_value", "expected:secret_not_found")]

    assert verdicts.errors(expected, WINDOW).met
    assert not verdicts.errors(expected + [Call(150, 30, "health", "timeout")], WINDOW).met
    assert not verdicts.errors([Call(150, 0.01, "health", "untyped:RemoteError")], WINDOW).met


def test_log_lines_per_call_leave_purges_and_refusals_aside(tmp_path: Path):
    log = tmp_path / "agent.log"
    purge = ("2026-12-05 18:00:00.000 1 INFO agent.handlers.events [-] Volume v deleted: "
             "purged 1 glance metadata key(s)\n")
    refusal = ("2026-12-05 18:00:00.000 1 INFO agent.dispatch [-] secret_get_value refused: "
               "secret_not_found\n")
    chatty = "2026-12-05 18:00:00.000 1 INFO agent.dispatch [-] answered a call\n"
    log.write_text("started\n" + purge * 10 + refusal * 10)

    assert verdicts.log({"agent-1": (log, len("started\n"))}, 1000).met

    log.write_text("started\n" + purge + chatty * 100)
    assert not verdicts.log({"agent-1": (log, len("started\n"))}, 1000).met
