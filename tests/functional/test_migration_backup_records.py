"""Migration 0009 on SQLite, PostgreSQL and MariaDB: backup records per project."""

from __future__ import annotations

import datetime
import uuid

import pytest
import sqlalchemy as sa

from db import migration

P1, P2 = "p1-project", "p2-project"
NOW = datetime.datetime(2026, 12, 5, 12, 0)


def record(backup_id: str, project_id: str | None) -> dict[str, object]:
    return {"backup_id": backup_id, "volume_id": str(uuid.uuid4()), "project_id": project_id,
            "account": f"SERVICE_{project_id}", "key_id": str(uuid.uuid4()),
            "created_at": NOW}


def test_0009_keeps_every_record_and_lets_projects_share_an_id(engine):
    migration.db_sync("0008", engine=engine)
    table = sa.Table("backup_records", sa.MetaData(), autoload_with=engine)
    before = [record(str(uuid.uuid4()), P1), record(str(uuid.uuid4()), P2),
              record(str(uuid.uuid4()), None)]
    with engine.begin() as conn:
        conn.execute(table.insert(), before)
        with pytest.raises(sa.exc.IntegrityError), conn.begin_nested():
            conn.execute(table.insert(), [record(before[0]["backup_id"], P2)])

    migration.db_sync("head", engine=engine)

    columns = [table.c[name] for name in before[0]]
    with engine.begin() as conn:
        after = [dict(row._mapping) for row in
                 conn.execute(sa.select(*columns).order_by(table.c.id))]
        conn.execute(table.insert(), [record(before[0]["backup_id"], P2)])
        with pytest.raises(sa.exc.IntegrityError), conn.begin_nested():
            conn.execute(table.insert(), [record(before[1]["backup_id"], P2)])
    assert after == before
