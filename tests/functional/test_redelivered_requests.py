"""A request that reaches two agents changes state once (SPEC §2: handlers are idempotent).

RabbitMQ hands a request to another consumer when the first agent's
acknowledgement was lost with its connection, and oslo.messaging's client
publishes a request again, with the same message id, when it lost the
publish confirm. Here the caller's own oslo.messaging client sends the
copies: every message it publishes inside :func:`one_message_id` carries
the same id, as a republished request does. Two real agents share each
real database; the first copy goes to one, the second to the other, one
after the other and at the same moment.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from oslo_messaging._drivers import amqp as rpc_amqp

from db import models
from tests.common import OTHER_PROJECT, member
from tests.functional.conftest import client_of

RACES = 12


@contextlib.contextmanager
def one_message_id(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Give every message this process publishes one fixed id, as copies of a request have."""
    fixed = uuid.uuid4().hex
    with monkeypatch.context() as patch:
        patch.setattr(rpc_amqp, "_add_unique_id",
                      lambda msg: msg.update({rpc_amqp.UNIQUE_ID: fixed}))
        yield fixed


def secret_uuids(database_url: str, usage_id: str) -> list[str]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return list(conn.scalars(sa.select(models.Secret.uuid).where(
                models.Secret.usage_id == usage_id)))
    finally:
        engine.dispose()


@pytest.fixture
def two_agents(start_agent, api, database_url):
    """Clients of two agents serving one database."""
    return (client_of(api, start_agent(database_url, host="agent-1")),
            client_of(api, start_agent(database_url, host="agent-2")))


def test_a_copy_served_by_another_agent_gets_the_first_answer(two_agents, database_url,
                                                              notifications, monkeypatch):
    first, second = two_agents
    usage_id = f"client.copy-{uuid.uuid4().hex[:8]}"
    # A copy is the same message: the same caller, method and arguments.
    caller = member()

    with one_message_id(monkeypatch):
        created = first.secret_generate(caller, "ceph", usage_id)
        again = second.secret_generate(caller, "ceph", usage_id)

    assert again == created
    assert secret_uuids(database_url, usage_id) == [created]
    notifications.wait_for("secret.define")
    with one_message_id(monkeypatch):
        assert first.secret_undefine(caller, created) is None
        assert second.secret_undefine(caller, created) is None
    notifications.wait_for("secret.undefine")
    assert secret_uuids(database_url, usage_id) == []
    assert [n["payload"]["uuid"] for n in notifications.of("secret.define")] == [created]
    assert [n["payload"]["uuid"] for n in notifications.of("secret.undefine")] == [created]

    # Another project's request with the same id is its own.
    with one_message_id(monkeypatch):
        ours = first.secret_generate(caller, "ceph", usage_id)
        theirs = second.secret_generate(member(OTHER_PROJECT), "ceph", usage_id)
    assert theirs != ours
    assert sorted(secret_uuids(database_url, usage_id)) == sorted([ours, theirs])


def test_copies_arriving_at_once_at_two_agents_make_one_secret(two_agents, database_url,
                                                               monkeypatch):
    first, second = two_agents
    usage_ids = [f"client.race-{n}-{uuid.uuid4().hex[:8]}" for n in range(RACES)]
    answers = []
    with ThreadPoolExecutor(2) as pool:
        for usage_id in usage_ids:
            caller = member()
            with one_message_id(monkeypatch):
                both = [pool.submit(client.secret_generate, caller, "ceph", usage_id)
                        for client in (first, second)]
                answers.append([future.result(timeout=30) for future in both])

    assert all(a == b for a, b in answers), answers
    assert [secret_uuids(database_url, usage_id) for usage_id in usage_ids] == [
        [a] for a, _ in answers]
