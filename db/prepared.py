"""Hot statements run on the database driver's cursor, compiled once per dialect.

A primary-key read or a one-row insert through SQLAlchemy's
``Connection.execute`` spent several times longer in SQLAlchemy (cache
key, execution context, result metadata, row objects) than in the driver
and the database together. A :class:`Prepared` statement does that work
once per statement, dialect and set of parameter names: the SQL text, the
order of its parameters and their bind processors, and for a SELECT each
column's result processor. Each execution then runs the text on a DBAPI
cursor of the connection the request already holds, in its transaction,
and applies the processors SQLAlchemy would, so rows hold the same Python
values.

On PostgreSQL's read connections the server also prepares each SELECT
once per connection (:data:`SERVER_PREPARED`): planning a row read cost
it about as much as running it.

:func:`db.api.execute` sends SELECTs of read-only requests and INSERTs
here, and SQLite's ``BEGIN`` of every write transaction runs through
:func:`run_text`. A statement this cannot run as SQLAlchemy would (a
list parameter, a column default computed at execution) goes through
SQLAlchemy instead.
The engine's ``before_cursor_execute`` and ``after_cursor_execute``
listeners still see each statement, and a driver error is raised as
SQLAlchemy raises it: wrapped in :class:`sqlalchemy.exc.DBAPIError`
without its parameters, with the connection invalidated when the error
says it is lost.
"""

from __future__ import annotations

import collections
import itertools
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Dialect

Processor = Callable[[Any], Any]
Statement = sa.Select[Any] | sa.Insert

#: Execution option of connections whose SELECTs the PostgreSQL server
#: prepares once per connection (``PREPARE``, then ``EXECUTE`` each time):
#: planning a row read cost the server as much again as running it. Set
#: on the read engine (:func:`db.api.configure`); those connections are in
#: autocommit, so a statement prepared there outlives no transaction.
SERVER_PREPARED = "custos_server_prepared"
# Per DBAPI connection (the pool's record of it): names prepared there.
_PREPARED_HERE = "custos_prepared_names"
_PYFORMAT = re.compile(r"%\((\w+)\)s")
_names = itertools.count(1)


class Prepared:
    """One SELECT or INSERT compiled for one dialect and one set of parameter names.

    :param statement: the statement; its parameters are named bind
        parameters (``sa.bindparam``, or an INSERT's column values) given
        at each execution.
    :param dialect: the dialect of the connections it runs on.
    :param names: the parameter names each execution gives.
    :raises ValueError: for a statement this cannot run directly: an
        expanding (``IN``) parameter, a value bound when it was built, a
        parameter the execution does not give (an INSERT column whose
        default SQLAlchemy would compute), or a parameter name SQLAlchemy
        escapes for the driver.
    """

    __slots__ = ("sql", "_names", "_bind_processors", "_processors", "_row", "server_name",
                 "server_prepare", "server_execute")

    def __init__(self, statement: Statement, dialect: Dialect, names: frozenset[str]) -> None:
        if isinstance(statement, sa.Insert):
            compiled = statement.compile(dialect=dialect, column_keys=sorted(names))
        else:
            compiled = statement.compile(dialect=dialect)
        for name, bind in compiled.binds.items():
            if (bind.expanding or name not in names or not bind.required
                    or bind.callable is not None):
                raise ValueError(f"parameter {name!r} is not given at execution")
        if getattr(compiled, "escaped_bind_names", None):
            raise ValueError("a parameter name needs escaping")
        self.sql = compiled.string
        self._names: tuple[str, ...] | None = (
            tuple(compiled.positiontup or ()) if compiled.positional else None)
        self._bind_processors = {
            name: processor for name, bind in compiled.binds.items()
            if (processor := bind.type.dialect_impl(dialect).bind_processor(dialect))}
        self._row: Any = None
        self._processors: list[tuple[int, Processor]] = []
        if isinstance(statement, sa.Select):
            columns = list(statement.selected_columns)
            self._processors = [
                (index, processor) for index, column in enumerate(columns)
                if (processor := column.type.dialect_impl(dialect).result_processor(dialect,
                                                                                    None))]
            keys = [column.key for column in columns]
            if None in keys:
                raise ValueError("a selected column has no name")
            self._row = collections.namedtuple("Row", keys)  # type: ignore[misc, arg-type]
        self.server_name: str | None = None
        self.server_prepare = self.server_execute = ""
        if (isinstance(statement, sa.Select) and dialect.name == "postgresql"
                and self._names is None):
            self._server_form()

    def _server_form(self) -> None:
        """Build the ``PREPARE`` and ``EXECUTE`` texts of a PostgreSQL read."""
        order: list[str] = []

        def number(match: re.Match[str]) -> str:
            if match.group(1) not in order:
                order.append(match.group(1))
            return f"${order.index(match.group(1)) + 1}"

        # PREPARE runs without parameters, so the driver leaves '%%' as it is.
        body = _PYFORMAT.sub(number, self.sql).replace("%%", "%")
        self.server_name = f"custos_{next(_names)}"
        self.server_prepare = f"PREPARE {self.server_name} AS {body}"
        arguments = ", ".join(f"%({name})s" for name in order)
        self.server_execute = (f"EXECUTE {self.server_name}({arguments})" if order
                               else f"EXECUTE {self.server_name}")

    def parameters(self, params: dict[str, Any]) -> Sequence[Any] | dict[str, Any]:
        """Return ``params`` in the driver's form: processed, in order where positional."""
        if self._bind_processors:
            params = dict(params)
            for name, processor in self._bind_processors.items():
                params[name] = processor(params[name])
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

    @property
    def returns_rows(self) -> bool:
        return self._row is not None


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
            raise sa_exc.MultipleResultsFound("Multiple rows were found when one or none "
                                              "was required")
        return self._rows[0] if self._rows else None

    def scalar(self) -> Any:
        """The first column of the first row, or None."""
        return self._rows[0][0] if self._rows else None


class Written:
    """What a prepared INSERT reports: the rows it wrote."""

    __slots__ = ("rowcount",)

    def __init__(self, rowcount: int) -> None:
        self.rowcount = rowcount


# Statements compare by identity: each module-level statement is prepared
# once per dialect and parameter names, and is kept alive by this cache as
# by its module.
_prepared: dict[tuple[Statement, str, frozenset[str]], Prepared | None] = {}


def prepare(statement: Statement, dialect: Dialect,
            names: frozenset[str] = frozenset()) -> Prepared | None:
    """Return ``statement`` compiled for ``dialect`` and ``names``, built on first use.

    :returns: None for a statement that must go through SQLAlchemy
        (see :class:`Prepared`).
    """
    key = (statement, dialect.name, names)
    try:
        return _prepared[key]
    except KeyError:
        pass
    try:
        prepared: Prepared | None = Prepared(statement, dialect, names)
    except ValueError:
        prepared = None
    # Two threads may build it at once; either result is the same.
    return _prepared.setdefault(key, prepared)


def _raise_as_sqlalchemy(conn: Connection, error: Any, sql: str, args: Any,
                         driver: Any, cursor: Any) -> NoReturn:
    lost = bool(conn.dialect.is_disconnect(error, driver, cursor))
    wrapped = sa_exc.DBAPIError.instance(
        sql, args, error, conn.dialect.loaded_dbapi.Error, hide_parameters=True,
        connection_invalidated=lost, dialect=conn.dialect)
    if lost:
        conn.invalidate(error)
    raise wrapped from error


def _on_cursor(conn: Connection, sql: str, args: Any, rows: bool,
               shown: str | None = None) -> tuple[Any, int]:
    """Run ``sql`` on a cursor of ``conn``'s driver connection, as SQLAlchemy would.

    :param shown: what the engine's listeners are told runs (the statement
        an ``EXECUTE`` stands for); ``sql`` itself when None.
    :returns: the raw rows (None unless ``rows``) and the cursor's rowcount.
    """
    dispatch = conn.dispatch
    driver = conn.connection.driver_connection
    cursor = driver.cursor()  # type: ignore[union-attr]
    told = sql if shown is None else shown
    try:
        for listener in dispatch.before_cursor_execute:
            listener(conn, cursor, told, args, None, False)
        try:
            cursor.execute(sql, args)
            raw = cursor.fetchall() if rows else None
        except conn.dialect.loaded_dbapi.Error as error:
            _raise_as_sqlalchemy(conn, error, told, args, driver, cursor)
        for listener in dispatch.after_cursor_execute:
            listener(conn, cursor, told, args, None, False)
        return raw, cursor.rowcount
    finally:
        cursor.close()


def _prepared_on_server(conn: Connection, prepared: Prepared) -> bool:
    """Make sure the server holds ``prepared`` on ``conn``'s connection; True once it does.

    A statement the server refuses to prepare is run as plain SQL from
    then on (False); a lost connection is raised as SQLAlchemy raises it.
    """
    done: set[str] = conn.connection.info.setdefault(_PREPARED_HERE, set())
    if prepared.server_name in done:
        return True
    driver = conn.connection.driver_connection
    cursor = driver.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(prepared.server_prepare)
    except conn.dialect.loaded_dbapi.Error as error:
        if conn.dialect.is_disconnect(error, driver, cursor):
            _raise_as_sqlalchemy(conn, error, prepared.sql, None, driver, cursor)
        prepared.server_name = None
        return False
    finally:
        cursor.close()
    assert prepared.server_name is not None
    done.add(prepared.server_name)
    return True


def run_text(conn: Connection, sql: str) -> None:
    """Run ``sql``, a statement without parameters or rows, on the driver's cursor of ``conn``.

    For what SQLAlchemy would run through ``exec_driver_sql`` on every
    transaction (SQLite's ``BEGIN``).

    :raises sqlalchemy.exc.DBAPIError: as SQLAlchemy would raise it.
    """
    _on_cursor(conn, sql, (), rows=False)


def run(conn: Connection, statement: Statement, params: dict[str, Any]) -> Any:
    """Run ``statement`` with ``params`` on the driver's cursor of ``conn``.

    :returns: :class:`Rows` for a SELECT, :class:`Written` for an INSERT;
        SQLAlchemy's result when the statement cannot be prepared.
    :raises sqlalchemy.exc.DBAPIError: as SQLAlchemy would raise it.
    """
    prepared = prepare(statement, conn.dialect, frozenset(params))
    if prepared is None:
        return conn.execute(statement, params)
    if (prepared.server_name is not None and conn.get_execution_options().get(SERVER_PREPARED)
            and _prepared_on_server(conn, prepared)):
        raw, rowcount = _on_cursor(conn, prepared.server_execute, prepared.parameters(params),
                                   prepared.returns_rows, shown=prepared.sql)
    else:
        raw, rowcount = _on_cursor(conn, prepared.sql, prepared.parameters(params),
                                   prepared.returns_rows)
    if raw is None:
        return Written(rowcount)
    return Rows([prepared.row(row) for row in raw])
