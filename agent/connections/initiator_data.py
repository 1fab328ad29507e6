"""Data access for ``driver_initiator_data``: a driver's private rows per initiator.

Rows are keyed by (initiator, namespace, key); the unique constraint on
those columns is also the index every lookup here uses. Writes are
upserts in one statement (``INSERT ... ON CONFLICT DO UPDATE`` on SQLite
and PostgreSQL, ``INSERT ... ON DUPLICATE KEY UPDATE`` on MariaDB), so two
agents writing one key at once never create two rows nor fail on the
constraint; removals are hard deletes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.orm import Session

from db.models import DriverInitiatorData, utcnow

_CONFLICT_COLUMNS = ["initiator", "namespace", "key"]


def read(session: Session, initiator: str, namespace: str) -> dict[str, str]:
    """Return ``{key: value}`` of one initiator in one namespace ({} when none)."""
    rows = session.execute(
        sa.select(DriverInitiatorData.key, DriverInitiatorData.value)
        .where(DriverInitiatorData.initiator == initiator,
               DriverInitiatorData.namespace == namespace))
    return {key: value if value is not None else "" for key, value in rows}


def _upsert_statement(dialect: str, rows: list[dict[str, Any]]) -> Any:
    now = utcnow()
    if dialect == "mysql":
        stmt = mysql.insert(DriverInitiatorData).values(rows)
        return stmt.on_duplicate_key_update(value=stmt.inserted.value, updated_at=now)
    if dialect in ("postgresql", "sqlite"):
        module = postgresql if dialect == "postgresql" else sqlite
        stmt = module.insert(DriverInitiatorData).values(rows)
        return stmt.on_conflict_do_update(
            index_elements=_CONFLICT_COLUMNS,
            set_={"value": stmt.excluded.value, "updated_at": now})
    raise NotImplementedError(f"no upsert for database dialect {dialect}")


def set_values(session: Session, initiator: str, namespace: str,
               values: Mapping[str, str]) -> None:
    """Insert or replace each key of ``values`` for the initiator."""
    if not values:
        return
    now = utcnow()
    # Sorted keys take row locks in one order in every agent: fewer deadlocks.
    rows = [{"initiator": initiator, "namespace": namespace, "key": key,
             "value": values[key], "created_at": now} for key in sorted(values)]
    session.execute(_upsert_statement(session.get_bind().dialect.name, rows))


def remove_keys(session: Session, initiator: str, namespace: str,
                keys: Iterable[str]) -> None:
    """Delete the rows of ``keys`` for the initiator; absent keys are ignored."""
    names = sorted(set(keys))
    if not names:
        return
    session.execute(
        sa.delete(DriverInitiatorData)
        .where(DriverInitiatorData.initiator == initiator,
               DriverInitiatorData.namespace == namespace,
               DriverInitiatorData.key.in_(names))
        .execution_options(synchronize_session=False))


def update(session: Session, initiator: str, namespace: str,
           set_values_: Mapping[str, str] | None, remove: Iterable[str] | None) -> None:
    """Apply one update: removals first, then the upsert of ``set_values_``."""
    remove_keys(session, initiator, namespace, remove or ())
    set_values(session, initiator, namespace, set_values_ or {})
