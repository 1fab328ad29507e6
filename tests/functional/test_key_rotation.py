"""Master key rotation on PostgreSQL with real agents: staged, locked, lossless.

What these tests force is the interleaving that lost data when the old
key was retired after a sleep: a ``secret_set_value`` that wraps its data
key under the old master key and commits while the rotation runs. A row
lock taken by the test holds that request between the two moments.
"""

from __future__ import annotations

import concurrent.futures
import json
import secrets
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import sqlalchemy as sa

from tests.common import member, nobody
from tests.functional.agentproc import AgentProcess, run_script

HOSTS = ("node-1", "node-2", "node-3")


def manage(proc: AgentProcess, *args: str, check: bool = True) -> Any:
    """Run custos-manage with the agent's configuration; its JSON result, or the process."""
    result = run_script("custos-manage", proc.config, *args, check=check)
    if not check:
        return result
    output = result.stdout
    return json.loads(output[output.index("{"):])


def restart(proc: AgentProcess, api: Any) -> None:
    assert proc.stop() == 0
    proc.start()
    proc.wait_ready(api.client.transport, nobody())


def define(api: Any, ctxt: Any, values: dict[str, bytes], server: str | None = None) -> str:
    uuid_ = api.secret_define_xml(ctxt, "<secret><usage type='ceph'><name>client.%s</name>"
                                        "</usage></secret>" % uuid.uuid4().hex, server=server)
    values[uuid_] = secrets.token_hex(16).encode()
    api.secret_set_value(ctxt, uuid_, values[uuid_], server=server)
    return uuid_


def key_ids(url: str) -> set[str]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        found = set(conn.execute(sa.text(
            "SELECT master_key_id FROM secrets UNION SELECT master_key_id FROM signing_keys"
        )).scalars())
    engine.dispose()
    return found


def pg_connect(url: str) -> Any:
    parsed = sa.engine.make_url(url)
    return psycopg2.connect(host=parsed.host, port=parsed.port, user=parsed.username,
                            dbname=parsed.database)


def wait_until(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


def waiting_on_lock(watch: Any, query_start: str) -> bool:
    with watch.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query ILIKE %s", (query_start + "%",))
        return cur.fetchone()[0] > 0


def test_a_value_committed_during_rotation_survives_it_and_a_restart(
        start_agent, api, postgresql_url):
    proc = start_agent(database_url=postgresql_url)
    ctxt = member()
    values: dict[str, bytes] = {}
    target = define(api, ctxt, values)
    for _ in range(5):
        define(api, ctxt, values)
    staged = manage(proc, "keys", "stage")

    holder, watch = pg_connect(postgresql_url), pg_connect(postgresql_url)
    watch.autocommit = True
    pool = concurrent.futures.ThreadPoolExecutor(2)
    try:
        # 1. The test holds the secret's row: the agent seals the new value
        #    under the current key, then waits to write it.
        with holder.cursor() as cur:
            cur.execute("SELECT id FROM secrets WHERE uuid = %s FOR UPDATE", (target,))
        new_value = b"written-during-rotation-" + secrets.token_hex(8).encode()
        setting = pool.submit(api.secret_set_value, ctxt, target, new_value)
        wait_until(lambda: waiting_on_lock(watch, "UPDATE secrets"), "set_value blocked")
        # 2. The rotation starts meanwhile; its promotion must wait for that
        #    request instead of going ahead and retiring the key under it.
        rotating = pool.submit(manage, proc, "keys", "rotate-master")
        wait_until(lambda: waiting_on_lock(watch, "SELECT master_key_state"),
                   "promotion waiting for the request")
        assert not rotating.done() and not setting.done()
        # 3. The request commits under the old key, then the rotation goes on.
        holder.commit()
        setting.result(timeout=30)
        result = rotating.result(timeout=60)
    finally:
        holder.close()
        watch.close()
        pool.shutdown(wait=False)
    values[target] = new_value

    assert result["master_key_id"] == staged["staged_key_id"]
    assert key_ids(postgresql_url) == {result["master_key_id"]}
    for uuid_, value in values.items():
        assert api.secret_get_value(ctxt, uuid_) == value
    restart(proc, api)
    for uuid_, value in values.items():
        assert api.secret_get_value(ctxt, uuid_) == value
    # The next rotation works too.
    manage(proc, "keys", "stage")
    assert manage(proc, "keys", "rotate-master")["retired_key_id"] == result["master_key_id"]


def test_three_agents_with_a_key_file_each_lose_nothing(start_agent, api, postgresql_url,
                                                        tmp_path):
    nodes: list[AgentProcess] = []
    for host in HOSTS:
        state = tmp_path / f"{host}-state"
        if nodes:
            # The master key is copied to each node, as README says.
            state.mkdir(mode=0o700)
            shutil.copy(Path(nodes[0].sections["DEFAULT"]["state_path"]) / "master.key",
                        state / "master.key")
            (state / "master.key").chmod(0o600)
        nodes.append(start_agent(database_url=postgresql_url, host=host, state_path=state))
    ctxt = member()
    values: dict[str, bytes] = {}
    for n in range(30):
        define(api, ctxt, values, server=HOSTS[n % 3])

    manage(nodes[0], "keys", "stage")
    manage(nodes[1], "keys", "stage")
    refused = manage(nodes[0], "keys", "rotate-master", check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "custos-manage: staged_key_not_everywhere: The staged master key is not held by "
        "every node yet (missing on: node-3); run 'custos-manage keys stage' there first")
    staged = manage(nodes[2], "keys", "stage")

    # Every agent keeps writing while one node rotates.
    pool = concurrent.futures.ThreadPoolExecutor(3)
    writes = [pool.submit(lambda host=host: [define(api, ctxt, values, server=host)
                                             for _ in range(15)]) for host in HOSTS]
    result = manage(nodes[0], "keys", "rotate-master")
    for write in writes:
        write.result(timeout=120)
    pool.shutdown()
    # Writes that went on after the rotation are wrapped under the new key.
    for host in HOSTS:
        define(api, ctxt, values, server=host)

    assert result["master_key_id"] == staged["staged_key_id"]
    assert key_ids(postgresql_url) == {result["master_key_id"]}
    for node in nodes:
        restart(node, api)
    for uuid_, value in values.items():
        for host in HOSTS:
            assert api.secret_get_value(ctxt, uuid_, server=host) == value


def test_two_rotations_at_once_one_is_refused(start_agent, api, postgresql_url):
    proc = start_agent(database_url=postgresql_url)
    ctxt = member()
    values: dict[str, bytes] = {}
    target = define(api, ctxt, values)
    manage(proc, "keys", "stage")
    holder, watch = pg_connect(postgresql_url), pg_connect(postgresql_url)
    watch.autocommit = True
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        # The first rotation is held in its re-wrap pass by a row lock.
        with holder.cursor() as cur:
            cur.execute("SELECT id FROM secrets WHERE uuid = %s FOR UPDATE", (target,))
        first = pool.submit(manage, proc, "keys", "rotate-master")
        wait_until(lambda: waiting_on_lock(watch, "UPDATE secrets"), "first rotation running")

        second = manage(proc, "keys", "rotate-master", check=False)

        holder.commit()
        result = first.result(timeout=60)
    finally:
        holder.close()
        watch.close()
        pool.shutdown(wait=False)

    assert second.returncode == 1
    assert second.stderr.strip() == (
        "custos-manage: key_rotation_in_progress: Another master key rotation is running; "
        "try again once it has finished")
    assert key_ids(postgresql_url) == {result["master_key_id"]}
    assert api.secret_get_value(ctxt, target) == values[target]


def test_a_lost_node_is_forgotten_and_rotation_then_finishes(start_agent, api, postgresql_url,
                                                             tmp_path):
    nodes: list[AgentProcess] = []
    for host in HOSTS[:2]:
        state = tmp_path / f"{host}-state"
        if nodes:
            state.mkdir(mode=0o700)
            shutil.copy(Path(nodes[0].sections["DEFAULT"]["state_path"]) / "master.key",
                        state / "master.key")
            (state / "master.key").chmod(0o600)
        nodes.append(start_agent(database_url=postgresql_url, host=host, state_path=state,
                                 auth={"strategy": "trusted"}))
    ctxt = member()
    values: dict[str, bytes] = {}
    for host in HOSTS[:2]:
        define(api, ctxt, values, server=host)
    # node-2 is lost for good before it could stage the next key.
    nodes[1].kill()
    staged = manage(nodes[0], "keys", "stage")
    refused = manage(nodes[0], "keys", "rotate-master", check=False)
    assert "missing on: node-2" in refused.stderr

    assert manage(nodes[0], "keys", "forget-host", "node-2") == {"host": "node-2",
                                                                 "forgotten": True}
    assert manage(nodes[0], "keys", "forget-host", "node-9") == {"host": "node-9",
                                                                 "forgotten": False}
    result = manage(nodes[0], "keys", "rotate-master")

    assert result["master_key_id"] == staged["staged_key_id"]
    assert key_ids(postgresql_url) == {result["master_key_id"]}
    assert "node-2" not in manage(nodes[0], "keys", "list")["holders"]
    for uuid_, value in values.items():
        assert api.secret_get_value(ctxt, uuid_, server="node-1") == value
