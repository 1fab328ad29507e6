"""A quick request the database holds up does not hold up the agent's other callers.

A real custos-agent on RabbitMQ and PostgreSQL serves a quick read on the
thread that read it off the bus (:class:`agent.rpc.RPCServer`). Here a
lock the test takes on the secrets table holds that read; while it waits,
other callers are answered, and once the lock goes the held read gets
its answer.
"""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa

from tests.common import admin, member, member_with_service, nobody

INITIATOR = "iqn.2004-10.com.example:relief"


def test_a_held_quick_read_does_not_hold_back_the_other_callers(start_agent, api,
                                                                 postgresql_url):
    start_agent(database_url=postgresql_url)
    caller = member()
    secret = api.secret_generate(caller, "ceph", "client.relief")
    value = api.secret_get_value(caller, secret)

    engine = sa.create_engine(postgresql_url)
    answers: list[bytes] = []
    try:
        with engine.connect() as locker:
            locker.execute(sa.text("LOCK TABLE secrets IN ACCESS EXCLUSIVE MODE"))
            held = threading.Thread(
                target=lambda: answers.append(api.secret_get_value(caller, secret)))
            held.start()
            time.sleep(0.5)
            assert held.is_alive() and not answers

            started = time.monotonic()
            assert api.health(nobody())["database"] == "ok"
            api.initiator_data_update(member_with_service(), INITIATOR, "probe", {"k": "v"}, [])
            assert api.initiator_data_get(admin(), INITIATOR, "probe") == {"k": "v"}
            assert time.monotonic() - started < 5
            assert held.is_alive() and not answers
            locker.rollback()
        held.join(20)
    finally:
        engine.dispose()
    assert answers == [value]
