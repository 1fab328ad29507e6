"""Managed keys over RabbitMQ on SQLite, PostgreSQL and MariaDB.

castellan's own cases run in test_castellan.py against one agent; here
each database gets an agent of its own (alone on the topic, so every call
reaches it) and the widest values its columns take.
"""

from __future__ import annotations

import uuid

from tests.common import member


def test_keys_and_consumers_on_each_database(start_agent, api, database_url: str) -> None:
    start_agent(database_url=database_url, host="agent-keys-db")
    ctxt = member()
    value = b"certificate bytes " + uuid.uuid4().bytes
    key_id = api.key_store(ctxt, "certificate", value, name="c" * 255)
    consumer = ("glance", "image", "i" * 255)

    # Recording a consumer twice (two services retrying) keeps one row.
    api.key_consumer_add(ctxt, key_id, "s" * 255, "t" * 255, "r" * 255)
    api.key_consumer_add(ctxt, key_id, *consumer)
    api.key_consumer_add(ctxt, key_id, *consumer)
    found = api.key_get(ctxt, key_id)
    api.key_consumer_remove(ctxt, key_id, *consumer)

    assert found["value"] == value and len(found["consumers"]) == 2
    assert [k["uuid"] for k in api.key_list(ctxt, object_type="certificate")] == [key_id]
    api.key_delete(ctxt, key_id, force=True)
    assert api.key_list(ctxt) == []
