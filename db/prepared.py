"""Hot reads run on the database driver's cursor, compiled once per dialect.

A primary-key read through SQLAlchemy's ``Connection.execute`` spent
several times longer in SQLAlchemy (cache key, execution context, result
set metadata, row objects) than in the driver and the database together.
A :class:`PreparedSelect` does that work once per statement and dialect:
the SQL text, the order of its parameters, their bind processors and
each column's result processor. Each read then runs the text on a DBAPI
cursor of the connection the request already holds and applies the same
processors SQLAlchemy would, so the rows hold the same Python values.

Only SELECTs on a read-only request's kept connection come here
(:func:`db.api.execute`); everything else goes through SQLAlchemy. The
engine's ``before_cursor_execute`` and ``after_cursor_execute`` listeners
still see each statement. A driver error is not translated here: the
statement runs again through SQLAlchemy, which wraps the error,
recognises a lost connection and invalidates it as everywhere else.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

Processor = Callable[[Any], Any]


class PreparedSelect:
    """One SELECT compiled for one dialect.

    :param statement: a SELECT whose parameters are all named bind
        parameters (``sa.bindparam``) given at each execution.
    :param dialect: the dialect of the connections it runs on.
    :raises ValueError: for a statement this cannot run directly: an
        expanding (``IN``) parameter or a literal value bound at build time.
    """

    __slots__ = ("sql", "_names", "_bind_processors", "_processors", "_row")

    def __init__(self, statement: sa.Select[Any], dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        for name, bind in compiled.binds.items():
            if bind.expanding or bind.value is not None or bind.callable is not None:
                raise ValueError(f"parameter {name!r} is not a plain named parameter")
        self.sql = compiled.string
        self._names: tuple[str, ...] | None = (
            tuple(compiled.positiontup or ()) if compiled.positional else None)
        self._bind_processors = {
            name: processor for name, bind in compiled.binds.items()
            if (processor := bind.type.dialect_impl(dialect).bind_processor(dialect))}
        columns = list(statement.selected_columns)
        self._processors: list[tuple[int, Processor]] = [
            (index, processor) for index, column in enumerate(columns)
            if (processor := column.type.dialect_impl(dialect).result_processor(dialect, None))]
        self._row = collections.namedtuple(  # type: ignore[misc]
            "Row", [column.key for column in columns])

    def parameters(self, params: dict[str, Any]) -> Sequence[Any] | dict[str, Any]:
        """Return ``params`` in the driver's form: processed, in order where positional."""
        if self._bind_processors:
            params = {name: self._bind_processors[name](value)
                      if name in self._bind_processors else value
                      for name, value in params.items()}
        if self._names is None:
            return params
        return tuple(params[name] for name in self._names)

    def row(self, raw: Sequence[Any]) -> Any:
        """Return one driver row as a named tuple of processed values."""
        if self._processors:
            values = list(raw)
            for index, processor in self._processors:
                values[index] = processor(values[index])
            return self._row._make(values)
        return self._row._make(raw)


class Rows:
    """The rows of one prepared read, with the methods callers use on a result."""

    __slots__ = ("_rows",)

    def __init__(self, rows: list[Any]) -> None:
        self._rows = rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def all(self) -> list[Any]:
        """Every row."""
        return list(self._rows)

    def one_or_none(self) -> Any:
        """The only row, or None.

        :raises sqlalchemy.exc.MultipleResultsFound: for more than one row.
        """
        if len(self._rows) > 1:
            raise sa.exc.MultipleResultsFound("Multiple rows were found when one or none "
                                              "was required")
        return self._rows[0] if self._rows else None

    def scalar(self) -> Any:
        """The first column of the first row, or None."""
        return self._rows[0][0] if self._rows else None


# Statements compare by identity: each module-level statement is prepared
# once per dialect, and is kept alive by this cache as by its module.
_prepared: dict[tuple[sa.Select[Any], str], PreparedSelect | None] = {}


def prepare(statement: sa.Select[Any], dialect: Dialect) -> PreparedSelect | None:
    """Return ``statement`` compiled for ``dialect``, built on first use.

    :returns: None for a statement that must go through SQLAlchemy
        (see :class:`PreparedSelect`).
    """
    key = (statement, dialect.name)
    try:
        return _prepared[key]
    except KeyError:
        pass
    try:
        prepared: PreparedSelect | None = PreparedSelect(statement, dialect)
    except ValueError:
        prepared = None
    # Two threads may build it at once; either result is the same.
    return _prepared.setdefault(key, prepared)


def run(conn: Connection, statement: sa.Select[Any], params: dict[str, Any]) -> Any:
    """Run ``statement`` on the driver's cursor of ``conn``.

    :returns: :class:`Rows`; or SQLAlchemy's result, when the statement
        cannot be prepared or the driver raised (the statement then runs
        again through SQLAlchemy, which translates the error).
    :raises sqlalchemy.exc.DBAPIError: as SQLAlchemy reports the error.
    """
    prepared = prepare(statement, conn.dialect)
    if prepared is None:
        return conn.execute(statement, params)
    args = prepared.parameters(params)
    dispatch = conn.dispatch
    driver = conn.connection.driver_connection
    cursor = driver.cursor()  # type: ignore[union-attr]
    try:
        for listener in dispatch.before_cursor_execute:
            listener(conn, cursor, prepared.sql, args, None, False)
        cursor.execute(prepared.sql, args)
        raw = cursor.fetchall()
        for listener in dispatch.after_cursor_execute:
            listener(conn, cursor, prepared.sql, args, None, False)
    except conn.dialect.loaded_dbapi.Error:
        cursor.close()
        return conn.execute(statement, params)
    cursor.close()
    return Rows([prepared.row(row) for row in raw])
