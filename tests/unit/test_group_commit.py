"""Group commit: requests that arrive together share a transaction, never an outcome."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from agent import exception
from agent.vendordata import bootroles
from db import api as db_api
from db import models
from db.group_commit import DeferredCommits, GroupCommit
from tests.common import eventually, make_context


def _roles_of(instance: str) -> list[str] | None:
    return db_api.run_in_transaction(lambda s: bootroles.load(s, instance), read_only=True)


def _store(instance: str, roles: list[str]):
    def work(session):
        bootroles.store_once(session, instance, roles)
        return instance
    return work


def _gated(group: GroupCommit, gate: threading.Event):
    """Start a request whose work waits on ``gate``: it leads, the rest queue behind it."""
    started = threading.Event()

    def work(session):
        started.set()
        gate.wait(10)
        bootroles.store_once(session, str(uuid.uuid4()), ["first"])
        return "first"

    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(group.run, work)
    assert started.wait(10)
    return pool, future


def _queued(group: GroupCommit) -> int:
    with group._lock:
        return len(group._waiting)


def _burst(group: GroupCommit, works: list) -> list:
    """Queue ``works`` behind a leader held at a gate, then let them through.

    :returns: their futures, all done.
    """
    gate = threading.Event()
    pool, first = _gated(group, gate)
    with ThreadPoolExecutor(max_workers=len(works)) as others:
        futures = [others.submit(group.run, work) for work in works]
        assert eventually(lambda: _queued(group) == len(works), 5)
        gate.set()
        for future in futures:
            future.exception(timeout=10)
    assert first.result(timeout=10) == "first"
    pool.shutdown()
    return futures


def test_requests_arriving_while_a_batch_commits_share_the_next_transaction(migrated):
    group = GroupCommit()
    instances = [str(uuid.uuid4()) for _ in range(10)]

    futures = _burst(group, [_store(i, ["member"]) for i in instances])

    assert [f.result() for f in futures] == instances
    assert [_roles_of(i) for i in instances] == [["member"]] * 10
    assert group.batches == 1 and group.grouped == 10


def test_one_bad_request_gets_its_error_and_costs_the_others_nothing(migrated):
    group = GroupCommit()
    good = [str(uuid.uuid4()) for _ in range(5)]

    def bad(session):
        bootroles.store_once(session, str(uuid.uuid4()), ["written then undone"])
        raise exception.InvalidInput(field="roles", reason="not a list")

    works = [_store(i, ["reader"]) for i in good]
    futures = _burst(group, works[:3] + [bad] + works[3:])

    assert [f.result() for f in futures[:3] + futures[4:]] == good
    with pytest.raises(exception.InvalidInput):
        futures[3].result()

    assert [_roles_of(i) for i in good] == [["reader"]] * 5
    # The bad request's row went with its rollback: only the good ones and the leader's.
    with db_api.get_engine().connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(
            models.InstanceSystemMetadata)) == 6
    assert group.batches == 0


def test_a_request_alone_runs_in_its_own_transaction(migrated):
    group = GroupCommit()
    instance = str(uuid.uuid4())

    assert group.run(_store(instance, [])) == instance

    assert _roles_of(instance) == []
    assert group.batches == 0


def test_the_first_roles_stay_when_one_batch_holds_two_casts_for_an_instance(migrated):
    group = GroupCommit()
    gate = threading.Event()
    pool, first = _gated(group, gate)
    instance = str(uuid.uuid4())
    with ThreadPoolExecutor(max_workers=2) as others:
        earlier = others.submit(group.run, _store(instance, ["member"]))
        assert eventually(lambda: _queued(group) == 1, 5)
        later = others.submit(group.run, _store(instance, ["admin"]))
        assert eventually(lambda: _queued(group) == 2, 5)
        gate.set()
        earlier.result(timeout=10)
        later.result(timeout=10)
    first.result(timeout=10)
    pool.shutdown()

    assert _roles_of(instance) == ["member"]
    assert group.batches == 1


def test_a_batch_writes_its_rows_in_one_insert(migrated, statements):
    committer = DeferredCommits("test", linger=0.5)
    instances = [str(uuid.uuid4()) for _ in range(12)]
    repeated = instances[3]

    for n, instance in enumerate(instances):
        committer.submit(_store(instance, [f"r{n}"]), lambda result, error: None)
    committer.submit(_store(repeated, ["later"]), lambda result, error: None)
    assert committer.drain(10)

    assert committer.batches == 1
    assert statements.count("INSERT") == 1
    assert [_roles_of(i) for i in instances] == [[f"r{n}"] for n in range(12)]


def test_a_batch_holds_at_most_max_batch_requests(migrated):
    group = GroupCommit(max_batch=3)
    instances = [str(uuid.uuid4()) for _ in range(7)]

    futures = _burst(group, [_store(i, ["member"]) for i in instances])

    assert [f.result() for f in futures] == instances

    assert [_roles_of(i) for i in instances] == [["member"]] * 7
    # 3 + 3 together, the last one alone.
    assert group.batches == 2 and group.grouped == 6


def test_max_batch_below_one_is_refused():
    with pytest.raises(ValueError):
        GroupCommit(max_batch=0)


def test_a_burst_of_boot_roles_casts_is_stored_whole_with_a_bad_one_among_them(harness):
    instances = [str(uuid.uuid4()) for _ in range(60)]
    service = make_context(service_roles=["service"])
    for n, instance in enumerate(instances):
        harness.api.instance_boot_roles_set(service, instance, roles=["member"])
        if n == 30:
            harness.api._cast(service, "instance_boot_roles_set",
                              instance_uuid="not-a-uuid", roles=["member"])

    assert eventually(lambda: all(_roles_of(i) == ["member"] for i in instances), 20)


# -- deferred commits (casts nobody waits for) ----------------------------------

class Outcomes:
    """``done`` callbacks that record each work's outcome."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[object, object]] = {}
        self.lock = threading.Lock()

    def done(self, name: str):
        def record(result, error):
            with self.lock:
                self.seen[name] = (result, error)
        return record


def _gate_committer(committer: DeferredCommits):
    """Hand ``committer`` a work that holds its thread until the returned event is set."""
    gate, started = threading.Event(), threading.Event()

    def work(session):
        started.set()
        gate.wait(10)
        return "gate"

    assert committer.submit(work, lambda result, error: None)
    assert started.wait(10)
    return gate


def test_deferred_works_within_the_linger_commit_together_then_report(migrated):
    committer = DeferredCommits("test", linger=0.5)
    outcomes = Outcomes()
    instances = [str(uuid.uuid4()) for _ in range(10)]

    for instance in instances:
        assert committer.submit(_store(instance, ["member"]), outcomes.done(instance))
    assert committer.drain(10)

    assert outcomes.seen == {i: (i, None) for i in instances}
    assert [_roles_of(i) for i in instances] == [["member"]] * 10
    assert committer.batches == 1 and committer.committed == 10


def test_a_bad_deferred_work_gets_its_error_and_costs_the_others_nothing(migrated):
    committer = DeferredCommits("test", linger=0.5)
    outcomes = Outcomes()
    good = [str(uuid.uuid4()) for _ in range(3)]

    def bad(session):
        bootroles.store_once(session, str(uuid.uuid4()), ["x"])
        raise exception.InvalidInput(field="roles", reason="bad")

    committer.submit(_store(good[0], ["a"]), outcomes.done(good[0]))
    committer.submit(bad, outcomes.done("bad"))
    for instance in good[1:]:
        committer.submit(_store(instance, ["a"]), outcomes.done(instance))
    assert committer.drain(10)

    assert isinstance(outcomes.seen["bad"][1], exception.InvalidInput)
    assert all(outcomes.seen[i] == (i, None) for i in good)
    assert [_roles_of(i) for i in good] == [["a"]] * 3


def test_the_committer_refuses_work_beyond_its_bound_and_drain_waits_for_it(migrated):
    committer = DeferredCommits("test", linger=0, max_pending=3)
    gate = _gate_committer(committer)
    outcomes = Outcomes()
    instances = [str(uuid.uuid4()) for _ in range(4)]

    accepted = [committer.submit(_store(i, ["m"]), outcomes.done(i)) for i in instances]

    assert accepted == [True, True, True, False]
    assert committer.pending() == 4  # the gate's work and three waiting
    assert not committer.drain(0.2)
    gate.set()
    assert committer.drain(10)
    assert set(outcomes.seen) == set(instances[:3])
    assert _roles_of(instances[3]) is None


def test_the_committer_thread_ends_when_idle_and_starts_again_for_new_work(migrated):
    committer = DeferredCommits("idle-test", linger=0, idle_exit=0.2)
    outcomes = Outcomes()

    def threads() -> int:
        return sum(t.name == "commit-idle-test" for t in threading.enumerate())

    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    committer.submit(_store(first, ["m"]), outcomes.done(first))
    assert committer.drain(10)
    assert eventually(lambda: threads() == 0, 5)

    committer.submit(_store(second, ["m"]), outcomes.done(second))
    assert committer.drain(10)
    assert outcomes.seen == {first: (first, None), second: (second, None)}
    assert threads() <= 1


def test_a_committer_bound_below_one_is_refused():
    with pytest.raises(ValueError):
        DeferredCommits("test", max_pending=0)
