"""How ``initiator_data_get`` latency grows with the table (SPEC §5).

Starts a real custos-agent on RabbitMQ, fills ``driver_initiator_data``
with realistic rows (CHAP username and secret UUID per initiator, plus a
few other keys) through SQLAlchemy, and measures p50/p99 of
``initiator_data_get`` over the bus at 100 rows and again at 100,000 rows.
Prints the ratio of the p50s; the goal is at most 1.2.

    .venv/bin/python -m benchmarks.initiator_data_scale \\
        [--database-url postgresql+psycopg2://postgres@127.0.0.1/custos_bench] [--calls 2000]

The database must be empty (default: a new SQLite file in a temporary
directory). The agent gets its own RabbitMQ virtual host when rabbitmqctl
can create one, so other agents on the broker never answer its calls.
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


def measure(api: CustosAPI, host: str, initiators: int, calls: int) -> tuple[float, float]:
    """Return (p50, p99) in milliseconds of ``calls`` lookups of random initiators."""
    ctxt = admin()
    for _ in range(100):  # warm-up: connections, caches, the agent's pool
        api.initiator_data_get(ctxt, initiator_name(random.randrange(initiators)), NAMESPACE,
                               server=host)
    samples = []
    for _ in range(calls):
        initiator = initiator_name(random.randrange(initiators))
        started = time.perf_counter()
        found = api.initiator_data_get(ctxt, initiator, NAMESPACE, server=host)
        samples.append((time.perf_counter() - started) * 1000)
        assert len(found) == len(KEYS), found
    cuts = statistics.quantiles(samples, n=100)
    return statistics.median(samples), cuts[98]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="an empty database (default: SQLite)")
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
    database_url = args.database_url or f"sqlite:///{workdir / 'custos.sqlite'}"
    proc = AgentProcess(workdir, {
        "DEFAULT": {"host": name, "state_path": str(workdir), "transport_url": url,
                    "control_exchange": name},
        "database": {"connection": database_url},
    })
    rpc.set_defaults(CONF)
    CONF([], project="custos", default_config_files=[])
    CONF.set_override("control_exchange", name)
    transport = messaging.get_rpc_transport(CONF, url=url,
                                            allowed_remote_exmods=rpc.ALLOWED_EXMODS)
    engine = sa.create_engine(database_url)
    try:
        proc.prepare()
        per_initiator = len(KEYS)
        fill(engine, 0, SMALL // per_initiator)
        proc.start()
        proc.wait_ready(transport, nobody())
        api = CustosAPI(transport=transport, timeout=30)
        small = measure(api, name, SMALL // per_initiator, args.calls)
        fill(engine, SMALL // per_initiator, LARGE // per_initiator)
        with engine.connect() as conn:
            rows = conn.scalar(sa.select(sa.func.count()).select_from(DriverInitiatorData))
        assert rows == LARGE, rows
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("ANALYZE driver_initiator_data")
        large = measure(api, name, LARGE // per_initiator, args.calls)
    finally:
        proc.stop()
        transport.cleanup()
        engine.dispose()
        if vhost:
            _rabbitmqctl("delete_vhost", name)
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"database: {engine.dialect.name}; {args.calls} calls per size")
    print(f"initiator_data_get at {SMALL:>7,} rows: p50 {small[0]:.2f} ms  p99 {small[1]:.2f} ms")
    print(f"initiator_data_get at {LARGE:>7,} rows: p50 {large[0]:.2f} ms  p99 {large[1]:.2f} ms")
    print(f"ratio p50 {LARGE:,} / {SMALL:,} rows: {large[0] / small[0]:.3f} (goal <= 1.2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
