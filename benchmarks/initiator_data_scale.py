"""How ``initiator_data_get`` latency grows with the table (SPEC §5).

Starts two real custos-agents on RabbitMQ, each on a fresh database of
the chosen kind: one whose ``driver_initiator_data`` holds 100 rows, one
with 100,000 (a CHAP username, a secret UUID and two other keys per
initiator, bulk-inserted through SQLAlchemy). It then calls
``initiator_data_get`` over the bus on the two in turn, so both sizes
see the same machine load, and prints p50/p99 of each and the ratio of
the p50s; the goal is at most 1.2.

    .venv/bin/python -m benchmarks.initiator_data_scale --database postgresql [--calls 2000]

``--database`` is sqlite (files in a temporary directory), postgresql or
mysql (servers on 127.0.0.1, as for the functional tests; the databases
are dropped afterwards). The agents get their own RabbitMQ virtual host
when rabbitmqctl can create one, so other agents never answer.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import oslo_messaging as messaging
import sqlalchemy as sa
from oslo_config import cfg

from agent import rpc
from db.models import DriverInitiatorData, utcnow
from rpcapi import CustosAPI
from tests.common import admin, nobody
from tests.functional.agentproc import AgentProcess
from tests.functional.conftest import create_database

CONF = cfg.CONF
RABBIT_URL = "rabbit://guest:guest@127.0.0.1:5672/"
NAMESPACE = "lvm"
SMALL, LARGE = 100, 100_000
# Four keys per initiator, as a driver that keeps CHAP and target details.
KEYS = ("chap_username", "chap_secret_uuid", "target_group", "last_portal")


def _rabbitmqctl(*args: str) -> bool:
    if not shutil.which("rabbitmqctl"):
        return False
    return subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True,
                          timeout=60).returncode == 0


def initiator_name(index: int) -> str:
    """The IQN of the ``index``-th benchmark initiator."""
    return f"iqn.1994-05.com.redhat:compute-{index:06d}"


def fill(engine: sa.Engine, first: int, last: int) -> None:
    """Insert the rows of initiators ``first`` to ``last - 1``, in batches."""
    table = DriverInitiatorData.__table__
    values = {"chap_username": lambda: "chap-" + uuid.uuid4().hex[:16],
              "chap_secret_uuid": lambda: str(uuid.uuid4()),
              "target_group": lambda: "tg-" + str(random.randint(1, 64)),
              "last_portal": lambda: "192.0.2.%d:3260" % random.randint(1, 254)}
    batch: list[dict[str, object]] = []
    now = utcnow()
    with engine.begin() as conn:
        for index in range(first, last):
            for key in KEYS:
                batch.append({"initiator": initiator_name(index), "namespace": NAMESPACE,
                              "key": key, "value": values[key](), "created_at": now})
            if len(batch) >= 8000:
                conn.execute(table.insert(), batch)
                batch = []
        if batch:
            conn.execute(table.insert(), batch)


def measure(api: CustosAPI, targets: list[tuple[str, int]],
            calls: int) -> list[tuple[float, float]]:
    """Call each ``(host, initiators)`` target in turn ``calls`` times.

    :returns: (p50, p99) in milliseconds per target, in order.
    """
    ctxt = admin()
    samples: list[list[float]] = [[] for _ in targets]
    for round_ in range(calls + 100):
        # Alternate which size goes first, so neither always follows the other.
        order = list(enumerate(targets))
        if round_ % 2:
            order.reverse()
        for index, (host, initiators) in order:
            initiator = initiator_name(random.randrange(initiators))
            started = time.perf_counter()
            found = api.initiator_data_get(ctxt, initiator, NAMESPACE, server=host)
            elapsed = (time.perf_counter() - started) * 1000
            assert len(found) == len(KEYS), found
            if round_ >= 100:  # the first rounds only warm up pools and caches
                samples[index].append(elapsed)
    return [(statistics.median(s), statistics.quantiles(s, n=100)[98]) for s in samples]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql", "mysql"],
                        default="sqlite")
    parser.add_argument("--rabbit-url", default=RABBIT_URL)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="custos-bench-"))
    name = f"custos-bench-{uuid.uuid4().hex[:8]}"
    url = args.rabbit_url
    vhost = _rabbitmqctl("add_vhost", name) and _rabbitmqctl(
        "set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    if vhost:
        url = url.rstrip("/") + "/" + name
    rpc.register_opts(CONF)
    CONF([], project="custos", default_config_files=[])
    CONF.set_override("control_exchange", name)
    transport = messaging.get_rpc_transport(CONF, url=url,
                                            allowed_remote_exmods=rpc.ALLOWED_EXMODS)
    agents: list[AgentProcess] = []
    drops = []
    targets = []
    try:
        for rows in (SMALL, LARGE):
            host = f"{name}-{rows}"
            state = workdir / host
            state.mkdir()
            database_url, drop = create_database(args.database, state)
            drops.append(drop)
            proc = AgentProcess(state, {
                "DEFAULT": {"host": host, "state_path": str(state), "transport_url": url,
                            "control_exchange": name},
                "database": {"connection": database_url},
                # Both sizes alike: the figure compares tables, not identities.
                "auth": {"strategy": "trusted"}})
            proc.prepare()
            engine = sa.create_engine(database_url)
            try:
                fill(engine, 0, rows // len(KEYS))
                with engine.connect() as conn:
                    count = conn.scalar(sa.select(sa.func.count())
                                        .select_from(DriverInitiatorData))
                assert count == rows, count
                if engine.dialect.name == "postgresql":
                    with engine.connect().execution_options(
                            isolation_level="AUTOCOMMIT") as conn:
                        conn.exec_driver_sql("ANALYZE driver_initiator_data")
            finally:
                engine.dispose()
            proc.start()
            agents.append(proc)
            proc.wait_ready(transport, nobody())
            targets.append((host, rows // len(KEYS)))
        api = CustosAPI(transport=transport, timeout=30)
        small, large = measure(api, targets, args.calls)
    finally:
        for proc in agents:
            proc.stop()
        transport.cleanup()
        for drop in drops:
            drop()
        if vhost:
            _rabbitmqctl("delete_vhost", name)
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"database: {args.database}; {args.calls} calls per size, interleaved")
    print(f"initiator_data_get at {SMALL:>7,} rows: p50 {small[0]:.2f} ms  p99 {small[1]:.2f} ms")
    print(f"initiator_data_get at {LARGE:>7,} rows: p50 {large[0]:.2f} ms  p99 {large[1]:.2f} ms")
    print(f"ratio p50 {LARGE:,} / {SMALL:,} rows: {large[0] / small[0]:.3f} (goal <= 1.2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
