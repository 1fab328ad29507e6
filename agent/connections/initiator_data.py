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

import sqlalchemy as sa
from sqlalchemy.orm import Session

from agent.secrets import store as secret_store
from db import api as db_api
from db import models, upsert
from db.models import DriverInitiatorData

_CONFLICT_COLUMNS = ["initiator", "namespace", "key"]

_TABLE = DriverInitiatorData.__table__
# Built once; each read binds its parameters to the cached compiled form.
_READ = (sa.select(_TABLE.c.key, _TABLE.c.value)
         .where(_TABLE.c.initiator == sa.bindparam("initiator"),
                _TABLE.c.namespace == sa.bindparam("namespace")))


def read(session: Session, initiator: str, namespace: str) -> dict[str, str]:
    """Return ``{key: value}`` of one initiator in one namespace ({} when none)."""
    rows = db_api.execute(session, _READ, {"initiator": initiator, "namespace": namespace})
    return {key: value if value is not None else "" for key, value in rows}


# One row per data key (or one row when there is none), each beside the
# driver secret of the initiator's usage, or NULLs when there is none.
_ANCHOR = sa.select(sa.literal_column("1").label("one")).subquery("anchor")
_READ_WITH_SECRET = (
    sa.select(_TABLE.c.key, _TABLE.c.value,
              *(column.label(f"secret_{column.key}")
                for column in secret_store.DRIVER_SECRET_COLUMNS))
    .select_from(
        _ANCHOR
        .outerjoin(_TABLE, sa.and_(_TABLE.c.initiator == sa.bindparam("initiator"),
                                   _TABLE.c.namespace == sa.bindparam("namespace")))
        .outerjoin(models.Secret.__table__, secret_store.driver_usage_condition(
            sa.bindparam("namespace"), sa.bindparam("usage_type"),
            sa.bindparam("initiator")))))


def read_with_driver_secret(
        session: Session, initiator: str, namespace: str,
        usage_type: str) -> tuple[dict[str, str], secret_store.DriverSecretRow | None]:
    """Read the initiator's data and the driver secret of its usage in one statement.

    On PostgreSQL every statement is a round trip, and an attach needs
    both: the driver's secret has usage (``namespace``, ``usage_type``,
    ``initiator``). One statement also reads both in one snapshot.

    :returns: ``{key: value}`` as :func:`read` returns it, and the secret's
        row for :meth:`agent.secrets.store.SecretStore.open_driver_secret`
        (None when there is no such secret).
    """
    rows = db_api.execute(session, _READ_WITH_SECRET, {
        "initiator": initiator, "namespace": namespace, "usage_type": usage_type}).all()
    data = {row[0]: row[1] if row[1] is not None else "" for row in rows if row[0] is not None}
    secret = None
    if rows and rows[0][2] is not None:
        secret = secret_store.DriverSecretRow._make(rows[0][2:])
    return data, secret


def set_values(session: Session, initiator: str, namespace: str,
               values: Mapping[str, str]) -> None:
    """Insert or replace each key of ``values`` for the initiator."""
    if not values:
        return
    # Sorted keys take row locks in one order in every agent: fewer deadlocks.
    rows = [{"initiator": initiator, "namespace": namespace, "key": key,
             "value": values[key]} for key in sorted(values)]
    upsert.upsert(session, DriverInitiatorData, rows, key=_CONFLICT_COLUMNS, update=["value"])


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
