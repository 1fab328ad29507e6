"""The RPC worker pool: warm threads first, bounded, nothing lost on shutdown."""

from __future__ import annotations

import threading
import time

import pytest

from agent.executor import LifoExecutor
from tests.common import eventually, nobody


def _thread_name() -> str:
    return threading.current_thread().name


def test_requests_one_after_another_run_on_one_thread():
    pool = LifoExecutor(max_workers=8)
    names = set()
    try:
        for _ in range(50):
            names.add(pool.submit(_thread_name).result(timeout=5))
            # A request arrives after the reply to the one before, by
            # which time its thread is back on the stack.
            assert eventually(lambda: pool.idle_workers == pool.num_workers, 5)
    finally:
        pool.shutdown()

    assert len(names) == 1
    assert pool.num_workers == 1


def test_the_most_recently_idle_thread_takes_the_next_request():
    pool = LifoExecutor(max_workers=4)
    release = [threading.Event() for _ in range(3)]
    try:
        busy = [pool.submit(lambda e=event: (e.wait(5), _thread_name())[1]) for event in release]
        names = []
        for event, future in zip(release, busy):
            event.set()
            names.append(future.result(timeout=5))
        # The last thread to finish is the first one asked again.
        assert pool.submit(_thread_name).result(timeout=5) == names[-1]
        assert pool.num_workers == 3
    finally:
        pool.shutdown()


def test_at_rest_only_while_no_thread_works_and_nothing_waits():
    pool = LifoExecutor(max_workers=1)
    gate = threading.Event()
    try:
        assert pool.at_rest()
        busy = pool.submit(gate.wait, 5)
        assert not pool.at_rest()
        waiting = pool.submit(_thread_name)
        gate.set()
        busy.result(timeout=5)
        waiting.result(timeout=5)
        assert eventually(pool.at_rest, 5)
    finally:
        pool.shutdown()


def test_a_burst_runs_at_most_max_workers_at_once_and_loses_nothing():
    pool = LifoExecutor(max_workers=3)
    lock = threading.Lock()
    running = [0]
    peak = [0]

    def work(n: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.005)
        with lock:
            running[0] -= 1
        return n

    try:
        futures = [pool.submit(work, n) for n in range(40)]
        assert [f.result(timeout=10) for f in futures] == list(range(40))
    finally:
        pool.shutdown()

    assert peak[0] == 3
    assert pool.num_workers == 3


def test_waiting_work_starts_in_order_of_arrival():
    pool = LifoExecutor(max_workers=1)
    gate = threading.Event()
    started: list[int] = []
    try:
        pool.submit(gate.wait, 5)
        futures = [pool.submit(started.append, n) for n in range(10)]
        gate.set()
        for future in futures:
            future.result(timeout=5)
    finally:
        pool.shutdown()

    assert started == list(range(10))


def test_an_exception_reaches_the_future_and_the_thread_serves_on():
    pool = LifoExecutor(max_workers=1)
    try:
        failed = pool.submit(int, "not a number")
        with pytest.raises(ValueError):
            failed.result(timeout=5)
        assert pool.submit(int, "7").result(timeout=5) == 7
    finally:
        pool.shutdown()


def test_shutdown_waits_for_work_in_progress_and_queued_work():
    pool = LifoExecutor(max_workers=1)
    done: list[int] = []
    pool.submit(lambda: (time.sleep(0.05), done.append(1)))
    pool.submit(done.append, 2)

    pool.shutdown(wait=True)

    assert done == [1, 2]
    with pytest.raises(RuntimeError):
        pool.submit(done.append, 3)


def test_shutdown_can_cancel_queued_work():
    pool = LifoExecutor(max_workers=1)
    gate = threading.Event()
    pool.submit(gate.wait, 5)
    queued = pool.submit(lambda: None)

    threading.Timer(0.05, gate.set).start()
    pool.shutdown(wait=True, cancel_futures=True)

    assert queued.cancelled()


def test_shutdown_ends_idle_threads():
    pool = LifoExecutor(max_workers=4)
    worker = pool.submit(threading.current_thread).result(timeout=5)
    assert worker.is_alive()

    pool.shutdown(wait=True)

    assert not worker.is_alive()


def test_max_workers_below_one_is_refused():
    with pytest.raises(ValueError):
        LifoExecutor(max_workers=0)


def test_the_agent_serves_sequential_calls_on_a_few_warm_threads(harness):
    for _ in range(20):
        assert harness.api.health(nobody())["database"] == "ok"

    pool = harness.service.server._work_executor
    assert isinstance(pool, LifoExecutor)
    # oslo.messaging's own pool would have started a thread per call.
    assert pool.num_workers < 5
