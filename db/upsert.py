"""Race-free writes on a unique key, in each database's own dialect.

Read-then-write loses updates and creates duplicate rows when two agents
handle the same key at once. These statements let the database decide:
``ON CONFLICT`` on SQLite and PostgreSQL, ``ON DUPLICATE KEY UPDATE`` on
MariaDB/MySQL (with a no-op update rather than ``INSERT IGNORE``, which
would also turn genuine errors such as truncation into warnings).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from db import api as db_api
from db import models

_MYSQL = ("mysql", "mariadb")


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


@functools.cache
def _insert(dialect: str) -> Callable[..., Any]:
    """The dialect's own ``insert``, imported when first needed.

    Importing all three dialects up front cost the agent's start-up more
    than the one it uses.
    """
    if dialect in _MYSQL:
        from sqlalchemy.dialects import mysql
        return mysql.insert
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql
        return postgresql.insert
    from sqlalchemy.dialects import sqlite
    return sqlite.insert


@functools.cache
def _insert_if_absent_statement(dialect: str, model: Any, key: tuple[str, ...]) -> Any:
    """``INSERT`` of one row that does nothing on a ``key`` clash, built once.

    The row's values are bound at execution, so every call reuses the
    compiled statement.
    """
    table = getattr(model, "__table__", model)
    return _nothing_on_clash(dialect, _insert(dialect)(table), table, key)


def _nothing_on_clash(dialect: str, statement: Any, table: Any, key: tuple[str, ...]) -> Any:
    """``statement``, an INSERT into ``table``, made to write nothing where ``key`` exists."""
    if dialect in _MYSQL:
        return statement.on_duplicate_key_update(**{key[0]: table.c[key[0]]})
    return statement.on_conflict_do_nothing(index_elements=list(key))


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
    dialect = _dialect(session)
    if dialect in _MYSQL:
        statement = _insert(dialect)(model).values(values)
        statement = statement.on_duplicate_key_update(
            updated_at=now, **{column: statement.inserted[column] for column in update})
    else:
        statement = _insert(dialect)(model).values(values)
        statement = statement.on_conflict_do_update(
            index_elements=list(key),
            set_={"updated_at": now, **{column: statement.excluded[column] for column in update}})
    session.execute(statement)


#: ``Session.info`` key under which :func:`insert_if_absent` holds rows back
#: for :func:`write_held` (set by whoever runs several requests' work in
#: one transaction).
HELD = "custos_held_inserts"


def insert_if_absent(session: Session, model: Any, row: dict[str, Any],
                     key: Sequence[str]) -> None:
    """Insert ``row`` unless a row with the same ``key`` exists; never overwrite.

    In a session holding inserts back (:data:`HELD`), the row is written
    by :func:`write_held` with the others of its batch, so the work that
    inserts it must not read it back.
    """
    values = {"created_at": models.utcnow(), **row}
    held = session.info.get(HELD)
    if held is not None:
        held.setdefault((model, tuple(key), tuple(values)), []).append(values)
        return
    # Not session.execute: its ORM bulk-insert handling would only add to
    # every cast that writes a row.
    db_api.execute(session, _insert_if_absent_statement(_dialect(session), model, tuple(key)),
                   values)


@functools.lru_cache(maxsize=256)
def _insert_rows_if_absent_statement(dialect: str, model: Any, key: tuple[str, ...],
                                     columns: tuple[str, ...], count: int) -> Any:
    """``INSERT`` of ``count`` rows, each doing nothing on a ``key`` clash, built once.

    Its parameters are ``<column>_<row>``. Rows clash in their order: the
    first row of a key is written, as one insert after the other would.
    """
    table = getattr(model, "__table__", model)
    rows = [{column: sa.bindparam(f"{column}_{index}", type_=table.c[column].type)
             for column in columns} for index in range(count)]
    return _nothing_on_clash(dialect, _insert(dialect)(table).values(rows), table, key)


def write_held(session: Session) -> None:
    """Write the rows :func:`insert_if_absent` held back, one statement per table.

    One round trip for a batch's rows instead of one per row. Does nothing
    in a session that holds nothing back.
    """
    held = session.info.pop(HELD, None)
    if not held:
        return
    dialect = _dialect(session)
    for (model, key, columns), rows in held.items():
        statement = _insert_rows_if_absent_statement(dialect, model, key, columns, len(rows))
        params = {f"{column}_{index}": row[column]
                  for index, row in enumerate(rows) for column in columns}
        db_api.execute(session, statement, params)


def rowcount(result: Any) -> int:
    """Rows a DELETE or UPDATE touched, 0 when the driver does not say."""
    return int(getattr(result, "rowcount", 0) or 0)
