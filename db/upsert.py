"""Race-free writes on a unique key, in each database's own dialect.

Read-then-write loses updates and creates duplicate rows when two agents
handle the same key at once. These statements let the database decide:
``ON CONFLICT`` on SQLite and PostgreSQL, ``ON DUPLICATE KEY UPDATE`` on
MariaDB/MySQL (with a no-op update rather than ``INSERT IGNORE``, which
would also turn genuine errors such as truncation into warnings).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.orm import Session

from db import models


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def upsert(session: Session, model: Any, rows: Sequence[dict[str, Any]],
           key: Sequence[str], update: Sequence[str]) -> None:
    """Insert ``rows``; where ``key`` exists already, overwrite ``update`` columns.

    ``updated_at`` is set on every overwritten row.

    :param model: a mapped class from :mod:`db.models`.
    :param rows: column values per row (``created_at`` is filled in).
    :param key: the columns of the unique constraint that decides a clash.
    :param update: the columns an existing row takes from the new one.
    """
    if not rows:
        return
    now = models.utcnow()
    values = [{"created_at": now, **row} for row in rows]
    statement: Any
    if _dialect(session) in ("mysql", "mariadb"):
        statement = mysql.insert(model).values(values)
        statement = statement.on_duplicate_key_update(
            updated_at=now, **{column: statement.inserted[column] for column in update})
    else:
        insert = postgresql.insert if _dialect(session) == "postgresql" else sqlite.insert
        statement = insert(model).values(values)
        statement = statement.on_conflict_do_update(
            index_elements=list(key),
            set_={"updated_at": now, **{column: statement.excluded[column] for column in update}})
    session.execute(statement)


def insert_if_absent(session: Session, model: Any, row: dict[str, Any],
                     key: Sequence[str]) -> None:
    """Insert ``row`` unless a row with the same ``key`` exists; never overwrite."""
    values = {"created_at": models.utcnow(), **row}
    statement: Any
    if _dialect(session) in ("mysql", "mariadb"):
        column = key[0]
        statement = mysql.insert(model).values(**values)
        statement = statement.on_duplicate_key_update(**{column: getattr(model, column)})
    else:
        insert = postgresql.insert if _dialect(session) == "postgresql" else sqlite.insert
        statement = insert(model).values(**values).on_conflict_do_nothing(
            index_elements=list(key))
    session.execute(statement)


def rowcount(result: Any) -> int:
    """Rows a DELETE or UPDATE touched, 0 when the driver does not say."""
    return int(getattr(result, "rowcount", 0) or 0)
