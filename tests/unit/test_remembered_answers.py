"""A request delivered twice changes state once, and its copy gets the first answer.

Each test hands the agent's own RPC dispatcher (:class:`agent.dispatch.
RequestDispatcher`) a message as the rabbit driver hands it over: the
request and the id its sender gave it. A copy is the same message again,
as the broker redelivers it or a client republishes it.
"""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass, field
from typing import Any

import oslo_messaging as messaging
import pytest
import sqlalchemy as sa

from agent import answers, exception
from agent.context import RequestContextSerializer
from agent.secrets.ephemeral import EphemeralSecretStore
from db import api as db_api
from db import models
from tests.common import OTHER_PROJECT, admin, member, member_with_service, service_only

SERIALIZER = RequestContextSerializer()


@dataclass
class Delivery:
    """An incoming RPC message as the rabbit driver gives it to the dispatcher."""

    ctxt: dict[str, Any]
    message: dict[str, Any]
    unique_id: str | None = field(default_factory=lambda: uuid.uuid4().hex)
    client_timeout: None = None


def delivery(context: Any, method: str, unique_id: str | None = None, **args: Any) -> Delivery:
    message = {"method": method, "args": args, "version": "1.1"}
    found = Delivery(SERIALIZER.serialize_context(context), message)
    if unique_id is not None:
        found.unique_id = unique_id
    return found


def answer(harness: Any, incoming: Delivery) -> Any:
    """What the agent answers ``incoming``; the error it raises for a refusal."""
    try:
        return harness.service.server.dispatcher.dispatch(incoming)
    except messaging.ExpectedException as expected:
        return expected.exc_info[1]


def rows(model: Any, *where: Any) -> list[Any]:
    engine = db_api.get_engine()
    with engine.connect() as conn:
        return list(conn.execute(sa.select(model).where(*where)))


def secrets_with_usage(usage_id: str) -> list[Any]:
    return rows(models.Secret, models.Secret.usage_id == usage_id)


def test_a_copy_of_secret_generate_gets_the_first_uuid_and_makes_no_second_secret(harness):
    first = delivery(member(), "secret_generate", usage_type="ceph", usage_id="client.copy")

    created = answer(harness, first)
    again = answer(harness, first)

    assert again == created
    assert [row.uuid for row in secrets_with_usage("client.copy")] == [created]
    assert [n["payload"]["uuid"] for n in harness.notifications("secret.define")] == [created]


def test_a_new_request_for_a_taken_usage_is_still_a_conflict(harness):
    created = answer(harness, delivery(member(), "secret_generate", usage_type="ceph",
                                       usage_id="client.taken"))

    refused = answer(harness, delivery(member(), "secret_generate", usage_type="ceph",
                                       usage_id="client.taken"))

    assert isinstance(refused, exception.SecretUsageConflict)
    assert [row.uuid for row in secrets_with_usage("client.taken")] == [created]


def test_a_copy_of_secret_undefine_answers_as_the_first_did(harness):
    created = harness.api.secret_generate(member(), "ceph", "client.gone")
    undefine = delivery(member(), "secret_undefine", uuid=created)

    assert answer(harness, undefine) is None
    assert answer(harness, undefine) is None

    assert secrets_with_usage("client.gone") == []
    assert len(harness.notifications("secret.undefine")) == 1
    # A new request for the same secret is told it is gone.
    assert isinstance(answer(harness, delivery(member(), "secret_undefine", uuid=created)),
                      exception.SecretNotFound)


def test_a_copy_of_secret_define_without_a_uuid_defines_one_secret(harness):
    xml = "<secret ephemeral='no' private='no'><usage type='ceph'><name>client.xml</name>" \
          "</usage></secret>"
    define = delivery(member(), "secret_define_xml", xml=xml)

    created = answer(harness, define)

    assert answer(harness, define) == created
    assert [row.uuid for row in secrets_with_usage("client.xml")] == [created]


def test_a_copy_of_key_create_makes_no_second_key(harness):
    create = delivery(member(), "key_create", object_type="symmetric", algorithm="AES",
                      bit_length=256)

    created = answer(harness, create)

    assert answer(harness, create) == created
    assert [row.uuid for row in rows(models.ManagedKey)] == [created]


def test_a_copy_of_key_create_pair_and_key_delete(harness):
    pair = delivery(member(), "key_create_pair", algorithm="RSA", bit_length=2048)
    private_uuid, public_uuid = answer(harness, pair)
    assert answer(harness, pair) == [private_uuid, public_uuid]
    assert len(rows(models.ManagedKey)) == 2

    delete = delivery(member(), "key_delete", uuid=public_uuid)
    assert answer(harness, delete) is None
    assert answer(harness, delete) is None
    assert [row.uuid for row in rows(models.ManagedKey)] == [private_uuid]


def test_a_failed_request_is_not_remembered(harness):
    answer(harness, delivery(member(), "secret_generate", usage_type="ceph",
                             usage_id="client.busy"))
    refused = delivery(member(), "secret_generate", usage_type="ceph", usage_id="client.busy")

    assert isinstance(answer(harness, refused), exception.SecretUsageConflict)
    assert isinstance(answer(harness, refused), exception.SecretUsageConflict)
    # Only the first, successful request left a record.
    assert len(rows(models.RememberedAnswer,
                    models.RememberedAnswer.method == "secret_generate")) == 1


@pytest.mark.parametrize("caller", [
    pytest.param(lambda: member(OTHER_PROJECT), id="member of another project"),
    pytest.param(lambda: member_with_service(OTHER_PROJECT),
                 id="another project with a service token"),
    pytest.param(lambda: admin(OTHER_PROJECT), id="admin"),
])
def test_another_project_reusing_the_id_never_gets_the_first_answer(harness, caller):
    first = delivery(member(), "secret_generate", usage_type="ceph", usage_id="client.mine")
    created = answer(harness, first)

    theirs = answer(harness, delivery(caller(), "secret_generate", first.unique_id,
                                      usage_type="ceph", usage_id="client.mine"))

    assert isinstance(theirs, str) and theirs != created
    assert {row.uuid for row in secrets_with_usage("client.mine")} == {created, theirs}
    # Their undefine with the same id is theirs alone, and leaves ours.
    undefine = delivery(caller(), "secret_undefine", first.unique_id, uuid=theirs)
    assert answer(harness, undefine) is None
    assert [row.uuid for row in secrets_with_usage("client.mine")] == [created]


def test_the_same_id_with_other_arguments_is_a_request_of_its_own(harness):
    caller = member()
    first = delivery(caller, "secret_generate", usage_type="ceph", usage_id="client.one")
    created = answer(harness, first)

    other = answer(harness, delivery(caller, "secret_generate", first.unique_id,
                                     usage_type="ceph", usage_id="client.two"))

    assert isinstance(other, str) and other != created
    assert [row.uuid for row in secrets_with_usage("client.two")] == [other]
    # A delete reusing the id is not answered with the generate's UUID either.
    assert answer(harness, delivery(caller, "secret_undefine", first.unique_id,
                                    uuid=other)) is None
    assert secrets_with_usage("client.two") == []


def test_another_user_of_the_same_project_reusing_the_id_runs_its_own_request(harness):
    first = delivery(member(user_id="alice"), "secret_undefine",
                     uuid=harness.api.secret_generate(member(), "ceph", "client.a"))
    assert answer(harness, first) is None

    refused = answer(harness, delivery(member(user_id="mallory"), "secret_undefine",
                                       first.unique_id, uuid=first.message["args"]["uuid"]))

    assert isinstance(refused, exception.SecretNotFound)


def test_a_project_less_token_reusing_the_id_gets_its_own_refusal(harness):
    first = delivery(member(), "secret_generate", usage_type="ceph", usage_id="client.ours")
    created = answer(harness, first)

    refused = answer(harness, delivery(service_only(), "secret_generate", first.unique_id,
                                       usage_type="ceph", usage_id="client.ours"))

    assert isinstance(refused, exception.CustosException)
    assert created not in str(refused)
    assert [row.uuid for row in secrets_with_usage("client.ours")] == [created]


def test_the_remembered_answer_is_the_uuid_and_nothing_of_the_secret(harness):
    first = delivery(member(), "secret_generate", usage_type="ceph", usage_id="client.kept")
    created = answer(harness, first)
    value = harness.api.secret_get_value(member(), created).decode()

    kept = rows(models.RememberedAnswer)

    assert [(row.method, row.answer) for row in kept] == [("secret_generate", created)]
    assert value not in repr(kept)


def test_a_message_without_an_id_runs_each_time(harness):
    no_id = delivery(member(), "secret_generate", usage_type="ceph", usage_id="client.noid")
    no_id.unique_id = None

    created = answer(harness, no_id)

    assert isinstance(answer(harness, no_id), exception.SecretUsageConflict)
    assert [row.uuid for row in secrets_with_usage("client.noid")] == [created]
    assert rows(models.RememberedAnswer) == []


@pytest.fixture
def keep_nothing(migrated):
    migrated.set_override("remember_answers_seconds", 0)
    yield
    migrated.clear_override("remember_answers_seconds")


def test_keeping_no_answers_lets_a_copy_run_again(keep_nothing, harness):
    first = delivery(member(), "secret_generate", usage_type="ceph", usage_id="client.off")

    answer(harness, first)

    assert isinstance(answer(harness, first), exception.SecretUsageConflict)
    assert rows(models.RememberedAnswer) == []


def _insert_expired(book: answers.AnswerBook, count: int, prefix: str) -> None:
    expired = models.utcnow() - datetime.timedelta(seconds=book.keep_seconds + 60)
    with db_api.get_engine().begin() as conn:
        conn.execute(sa.insert(models.RememberedAnswer), [
            {"request_id": f"{prefix}{n}", "project_id": "p", "method": "secret_generate",
             "answer": str(uuid.uuid4()), "created_at": expired} for n in range(count)])


def test_expired_answers_are_deleted_and_the_table_stays_bounded(harness, monkeypatch):
    book = harness.runtime.answers
    _insert_expired(book, 5000, "old")
    monkeypatch.setattr(book, "_next_prune", 0.0)

    first = delivery(member(), "secret_generate", usage_type="ceph", usage_id="client.new")
    created = answer(harness, first)

    assert [row.answer for row in rows(models.RememberedAnswer)] == [created]

    # The next deletion waits PRUNE_EVERY seconds, whatever the requests.
    _insert_expired(book, 10, "later")
    answer(harness, delivery(member(), "secret_generate", usage_type="ceph",
                             usage_id="client.next"))
    assert len(rows(models.RememberedAnswer)) == 12


def test_a_copy_served_by_an_agent_that_never_held_the_ephemeral_secret_keeps_none(harness):
    first = delivery(member(), "secret_generate", usage_type="ceph", usage_id="client.mem",
                     ephemeral=True)
    created = answer(harness, first)
    # The copy reaches another agent: one whose memory never held the secret.
    other_agent = EphemeralSecretStore()
    harness.runtime.secrets.ephemeral = other_agent

    assert answer(harness, first) == created
    assert other_agent.list() == []
