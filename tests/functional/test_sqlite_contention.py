"""Eight callers storing secrets at once against one custos-agent on SQLite.

SQLite has one writer at a time: the others must wait their turn, and a
busy writer is not an unavailable database.
"""

from __future__ import annotations

import time
import uuid

from rpcapi import CustosAPI
from tests.common import member
from tests.functional.load import Load

CALLERS = 8
# About 2,000 stores: the failure this guards against struck a few calls
# in a thousand.
SECONDS = 20


def test_eight_writers_on_sqlite_wait_their_turn_and_none_fails(start_agent, transport):
    start_agent(auth={"strategy": "trusted"})
    # A plain client: the values stored here are made up, and the log
    # canary would search every log line and notification for each of
    # thousands of them at the end of the run.
    api = CustosAPI(transport=transport, timeout=30)
    ctxt = member()

    def store(worker: int, n: int) -> str:
        uuid_ = api.secret_define_xml(
            ctxt, "<secret ephemeral='no' private='no'><usage type='ceph'><name>"
                  f"client.{worker}.{n}.{uuid.uuid4().hex[:8]}</name></usage></secret>")
        api.secret_set_value(ctxt, uuid_, f"value {worker} {n}".encode())
        return uuid_

    load = Load(store, threads=CALLERS).start()
    time.sleep(SECONDS)
    load.stop()

    summary = load.summary()
    assert set(summary) == {"ok"}, summary
    assert summary["ok"] >= CALLERS * 10, summary
    for uuid_ in load.results()[-CALLERS:]:
        assert api.secret_get_value(ctxt, uuid_).startswith(b"value ")
