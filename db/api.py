"""Engine, sessions and retries.

One engine per process, built from ``[database] connection`` (a SQLite
file under ``state_path`` by default). Work runs in :func:`transaction`,
which opens one session, commits or rolls back as a whole, and is retried
by :func:`run_in_transaction` when the database reports a deadlock or a
lost connection. When the database stays out of reach the caller gets
:class:`agent.exception.DatabaseUnavailable`; the engine keeps its pool,
so the next request reconnects by itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

import sqlalchemy as sa
import tenacity
from oslo_config import cfg
from sqlalchemy import event, exc as sa_exc
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from agent import exception, metrics
from db import prepared

CONF = cfg.CONF
LOG = logging.getLogger(__name__)

T = TypeVar("T")

_lock = threading.Lock()
_engine: Engine | None = None
_sessionmaker: sessionmaker[Session] | None = None
_read_sessionmaker: sessionmaker[Session] | None = None
_read_engine: Engine | None = None
_warm_reads: WarmConnections | None = None
_warm_writes: WarmConnections | None = None
# One write transaction at a time among this process's threads, on SQLite
# (see _writer_turn); None on other databases.
_sqlite_writer: threading.RLock | None = None

#: Execution option of the connections of read-only work (:func:`transaction`).
READ_ONLY = "custos_read_only"
_PING = sa.text("SELECT 1")
#: Seconds after which a pooled connection is replaced (not for SQLite).
POOL_RECYCLE_S = 3600

# SQLSTATE / error numbers that mean "try the whole transaction again".
_PG_RETRY_CODES = {"40001", "40P01"}
# 1047: a Galera node that is not ready (not yet synced, or cut off from
# the cluster's primary component); another attempt may reach it ready or
# another node through the load balancer.
_MYSQL_RETRY_CODES = {1205, 1213, 1047}
#: Seconds a SQLite statement waits for another connection's lock before
#: "database is locked"; then the caller gets DatabaseUnavailable, not a
#: retry, since this wait already is one (:func:`is_lock_timeout`).
SQLITE_BUSY_TIMEOUT_S = 10.0
#: ``wsrep_sync_wait`` of connections to a Galera node (:func:`_galera_causal_reads`).
WSREP_SYNC_WAIT = 3
# MySQL client errors for a server that is gone or refuses connections.
_MYSQL_GONE_CODES = {2002, 2003, 2006, 2013, 2055, 1927, 1053}


def default_url(conf: cfg.ConfigOpts | None = None) -> str:
    """Return the configured database URL, or the SQLite default."""
    conf = conf or CONF
    if conf.database.connection:
        return conf.database.connection
    return "sqlite:///" + os.path.join(conf.state_path, "custos.sqlite")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    # WAL lets readers go on while one writer commits; the busy timeout
    # turns a short lock wait into a wait instead of an error.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
    # pysqlite opens a transaction only before DML and lets a SAVEPOINT
    # outside one commit on RELEASE; SQLAlchemy emits BEGIN itself instead
    # (_sqlite_begin), so a rolled-back request also undoes its savepoints.
    dbapi_conn.isolation_level = None


def _galera_causal_reads(dbapi_conn: Any, _record: Any) -> None:
    """Make a Galera node's reads wait until it has applied what the cluster committed.

    A write committed through one node is certified everywhere at once
    but applied by the other nodes a moment later; without this, an
    agent on another node could answer "no value" for a secret another
    agent has just stored. 3 = SELECT (and the start of a transaction),
    UPDATE and DELETE wait; an INSERT needs no wait, since a conflict
    with a row not yet applied fails certification and is retried.
    Only where ``wsrep_on`` is ON: a plain MariaDB or MySQL server gets
    nothing but this one query per new connection.
    """
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute("SHOW VARIABLES LIKE 'wsrep_on'")
        row = cursor.fetchone()
        if row is not None and str(row[1]).upper() == "ON":
            cursor.execute(f"SET SESSION wsrep_sync_wait = {WSREP_SYNC_WAIT}")
    finally:
        cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # A read runs in the statement's own implicit transaction: one
    # statement sees one snapshot, and BEGIN/COMMIT would only add cost.
    # A write transaction takes the write lock at once: a deferred BEGIN
    # reads first and must then upgrade its snapshot to a writer, which
    # SQLite refuses at once ("database is locked", without the busy
    # wait) when another writer committed in between. IMMEDIATE waits
    # its turn for the lock, up to the busy timeout.
    if not conn.get_execution_options().get(READ_ONLY):
        prepared.run_text(conn, "BEGIN IMMEDIATE")


class WriteNeeded(RuntimeError):
    """Work running without a write transaction tried to write.

    Raised before anything is written: by the flush of a read-only
    session, and by any statement other than a SELECT on a read-only
    connection. Work declared read-first is then run again in a write
    transaction (:func:`agent.dispatch.rpc_method`).
    """

    def __init__(self) -> None:
        super().__init__("a read-only request tried to write")


def _refuse_write(session: Session, _context: Any, _instances: Any) -> None:
    raise WriteNeeded()


def _refuse_write_statement(conn: Any, _cursor: Any, statement: str, _parameters: Any,
                            _context: Any, _executemany: bool) -> None:
    # Without a transaction a write would commit by itself, statement by
    # statement: it must never reach the database.
    if (conn.get_execution_options().get(READ_ONLY)
            and statement.lstrip()[:6].upper() != "SELECT"):
        raise WriteNeeded()


def _own_read_pool(engine: Engine) -> bool:
    """True where read-only work gets an engine and pool of its own.

    PostgreSQL: its connections stay in autocommit, so there are no BEGIN
    and COMMIT round trips around a single SELECT and no switch of a
    pooled connection in and out of autocommit (psycopg2's
    set_isolation_level) at every checkout and return, which cost as
    much. A SQLite file: readers in WAL mode never wait for the writer.
    MySQL and in-memory SQLite share the engine's pool (an in-memory
    database exists only in its own connection).
    """
    if engine.dialect.name == "postgresql":
        return True
    database = engine.url.database
    return (engine.dialect.name == "sqlite" and bool(database)
            and database != ":memory:" and not str(database).startswith("file:"))


def _read_only_engine(engine: Engine) -> Engine:
    """The engine of read-only work (see :func:`_own_read_pool`).

    On PostgreSQL its connections, in autocommit, have the server prepare
    the hot reads (:data:`db.prepared.SERVER_PREPARED`) unless
    ``[database] server_prepared_reads`` is off.
    """
    options: dict[str, Any] = {READ_ONLY: True}
    if _own_read_pool(engine):
        engine = create_engine(engine.url.render_as_string(hide_password=False),
                               read_only=True)
        if engine.dialect.name == "postgresql" and CONF.database.server_prepared_reads:
            options[prepared.SERVER_PREPARED] = True
    return engine.execution_options(**options)


class WarmConnections:
    """Connections kept checked out between requests.

    A request that makes one primary-key read or one small write spent
    more on taking a connection from SQLAlchemy's pool and giving it back
    (connection object, checkout and return events, the reset on return)
    than on its statement. Sessions bind to one of these connections
    instead; the most recently used is taken first, so a steady stream of
    requests runs on one warm connection.

    Bounds: at most ``keep`` connections wait here; more are returned to
    the pool. Every connection still comes from its engine's pool, so the
    pool's size and overflow bound them all. A connection is not kept
    after an error that invalidated it or past :data:`POOL_RECYCLE_S`;
    closing it returns it to the pool, whose reset on return ends any
    transaction the database holds for it. A stale connection (the server
    restarted) makes every waiting one go (:meth:`drop`).

    :param engine: the engine they come from.
    :param keep: how many idle connections to keep (0: none).
    :param hold_transaction: keep each in one transaction of SQLAlchemy's
        that sessions join (read-only work, see :meth:`take`); otherwise a
        connection waits outside any transaction and each session begins
        and ends its own on it.
    """

    def __init__(self, engine: Engine, keep: int, hold_transaction: bool = False) -> None:
        self._engine = engine
        self._keep = keep
        self._hold = hold_transaction
        self._lock = threading.Lock()
        self._idle: list[tuple[Connection, float]] = []
        self._generation = 0

    def take(self) -> tuple[Connection, float, int]:
        """Return a connection, when it left the pool, and the current generation.

        With ``hold_transaction`` the connection is in a transaction of
        SQLAlchemy's that sessions join (``join_transaction_mode="rollback_only"``)
        instead of beginning and rolling back one of their own for every
        request. On the read engine that transaction emits nothing to the
        database: SQLite gets no BEGIN (:func:`_sqlite_begin`) and
        PostgreSQL runs in autocommit, so each statement still sees the
        latest commit.
        """
        with self._lock:
            generation = self._generation
            conn, born = self._idle.pop() if self._idle else (None, 0.0)
        if conn is None:
            conn, born = self._engine.connect(), time.monotonic()
        if self._hold and not conn.in_transaction():
            conn.begin()
        return conn, born, generation

    def give(self, conn: Connection, born: float, generation: int) -> None:
        """Keep ``conn`` for the next request, or close it (back to the pool)."""
        if (not conn.invalidated and time.monotonic() - born < POOL_RECYCLE_S
                and (self._hold or not conn.in_transaction())):
            with self._lock:
                if generation == self._generation and len(self._idle) < self._keep:
                    self._idle.append((conn, born))
                    return
        conn.close()

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        """Lend a connection for one piece of work, then keep it or close it.

        An error that invalidated it makes every waiting one go (:meth:`drop`).
        """
        conn, born, generation = self.take()
        try:
            yield conn
        except sa_exc.DBAPIError as error:
            if error.connection_invalidated:
                self.drop()
            raise
        finally:
            self.give(conn, born, generation)

    def drop(self) -> None:
        """Close every waiting connection; those in use are not kept afterwards."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._generation += 1
        for conn, _born in idle:
            conn.close()

    def idle(self) -> int:
        """How many connections wait now."""
        with self._lock:
            return len(self._idle)


def _pool_size(engine: Engine) -> int:
    size = getattr(engine.pool, "size", None)
    return size() if callable(size) else 0


def _warm_reads_for(engine: Engine, read_engine: Engine) -> WarmConnections:
    # Kept only where reads have a pool of their own (_own_read_pool):
    # kept readers must never hold connections the writers need.
    keep = _pool_size(read_engine) if read_engine.pool is not engine.pool else 0
    return WarmConnections(read_engine, keep, hold_transaction=True)


def _private_sqlite_file(path: str) -> None:
    """Create the SQLite file (and its directory) for its owner alone.

    The directory is created 0700 and the database 0600 before SQLite
    opens it; SQLite gives its WAL and shared-memory files the database's
    mode. Files of ours that are looser are tightened to 0600.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for name in (path, path + "-wal", path + "-shm"):
        try:
            info = os.stat(name)
        except FileNotFoundError:
            continue
        if info.st_mode & 0o077 and info.st_uid == os.getuid():
            os.chmod(name, 0o600)


def create_engine(url: str, conf: cfg.ConfigOpts | None = None,
                  read_only: bool = False) -> Engine:
    """Build an engine for ``url`` with the pool and driver settings custos uses.

    :param url: an SQLAlchemy URL (sqlite, postgresql+psycopg2,
        mysql+pymysql).
    :param read_only: (PostgreSQL) connections in autocommit, for
        statements that change nothing.
    :returns: a new engine; the caller owns it.
    """
    conf = conf or CONF
    parsed = make_url(url)
    # hide_parameters: an error message must never carry a bound value.
    # No pre-ping: a pooled connection the server dropped (restart, Galera
    # node failover, idle timeout) fails its first statement as a
    # disconnect, the dialect then discards every pooled connection, and
    # run_in_transaction runs the work again at once. A ping would cost a
    # round trip on every request to save that one retry.
    kwargs: dict[str, Any] = {"future": True, "hide_parameters": True}
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            _private_sqlite_file(database)
        connect_args["check_same_thread"] = False
        connect_args["timeout"] = SQLITE_BUSY_TIMEOUT_S
    else:
        kwargs.update(pool_size=conf.database.max_pool_size,
                      max_overflow=conf.database.max_overflow,
                      pool_timeout=conf.database.pool_timeout,
                      pool_recycle=POOL_RECYCLE_S)
        connect_args["connect_timeout"] = conf.database.connect_timeout
        if read_only and parsed.get_backend_name() == "postgresql":
            kwargs.update(isolation_level="AUTOCOMMIT", skip_autocommit_rollback=True)
        if parsed.get_backend_name() == "mysql" and "charset" not in parsed.query:
            parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    engine = sa.create_engine(parsed, connect_args=connect_args, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    elif parsed.get_backend_name() == "mysql":
        event.listen(engine, "connect", _galera_causal_reads)
    event.listen(engine, "before_cursor_execute", _refuse_write_statement)
    return engine


def configure(url: str | None = None) -> Engine:
    """(Re)build the process engine, from ``url`` or the configuration.

    :returns: the new engine.
    """
    global _engine, _sessionmaker, _read_sessionmaker, _read_engine, _warm_reads, _warm_writes
    global _sqlite_writer
    with _lock:
        _dispose_locked()
        _engine = create_engine(url or default_url())
        _sqlite_writer = threading.RLock() if _engine.dialect.name == "sqlite" else None
        _read_engine = _read_only_engine(_engine)
        _warm_reads = _warm_reads_for(_engine, _read_engine)
        _warm_writes = WarmConnections(_engine, _pool_size(_engine))
        _sessionmaker = sessionmaker(bind=_engine, expire_on_commit=False)
        # Bound per session to a connection of _warm_reads, joining its
        # transaction (WarmConnections.take).
        _read_sessionmaker = sessionmaker(expire_on_commit=False, autoflush=False,
                                          join_transaction_mode="rollback_only")
        event.listen(_read_sessionmaker, "before_flush", _refuse_write)
        return _engine


def get_engine() -> Engine:
    """Return the process engine, building it on first use."""
    if _engine is None:
        return configure()
    return _engine


def read_engine() -> Engine:
    """Return the engine of read-only work (:func:`transaction`), building it on first use."""
    get_engine()
    assert _read_engine is not None
    return _read_engine


def warm_reads() -> WarmConnections:
    """Return the idle connections kept for read-only work."""
    get_engine()
    assert _warm_reads is not None
    return _warm_reads


def warm_writes() -> WarmConnections:
    """Return the idle connections kept for write transactions."""
    get_engine()
    assert _warm_writes is not None
    return _warm_writes


def dispose() -> None:
    """Close every pooled connection and forget the engine."""
    with _lock:
        _dispose_locked()


def _dispose_locked() -> None:
    global _engine, _sessionmaker, _read_sessionmaker, _read_engine, _warm_reads, _warm_writes
    for warm in (_warm_reads, _warm_writes):
        if warm is not None:
            warm.drop()
    for engine in (_engine, _read_engine):
        if engine is not None:
            engine.dispose()
    _engine = _read_engine = _warm_reads = _warm_writes = None
    _sessionmaker = _read_sessionmaker = None


@contextlib.contextmanager
def _writer_turn(writer: threading.RLock | None) -> Iterator[None]:
    """Wait, as a thread of this process, for the turn to write to SQLite.

    SQLite lets one connection write at a time. A connection that finds
    the file locked does not wait for the release but sleeps and tries
    again, after longer and longer pauses (up to 100 ms between tries),
    so under concurrent writes a writer typically starts tens of
    milliseconds after the lock became free. The agent's own writers wait
    on this lock instead, which hands the turn over as soon as the
    previous write transaction ends; SQLite's busy wait is left for
    writers of other processes (``custos-manage``). Reentrant: a thread
    that already writes is not made to wait for itself.

    :raises DatabaseUnavailable: after :data:`SQLITE_BUSY_TIMEOUT_S`
        seconds without a turn, as SQLite's own wait ends.
    """
    if writer is None:
        yield
        return
    if not writer.acquire(timeout=SQLITE_BUSY_TIMEOUT_S):
        LOG.warning("Database locked for %.0f s by other requests of this agent",
                    SQLITE_BUSY_TIMEOUT_S)
        raise exception.DatabaseUnavailable()
    try:
        yield
    finally:
        writer.release()


@contextlib.contextmanager
def transaction(read_only: bool = False) -> Iterator[Session]:
    """Open one session in one transaction: commit on success, else roll back.

    The session runs on a connection kept between requests
    (:class:`WarmConnections`).

    :param read_only: for work that changes nothing: no explicit
        transaction (SQLite emits no BEGIN, PostgreSQL runs in autocommit),
        so each statement sees its own snapshot; a flush or a statement
        other than a SELECT raises :class:`WriteNeeded`.
    :raises sqlalchemy.exc.SQLAlchemyError: as the database reports it;
        :func:`run_in_transaction` is what retries and translates.
    """
    if _sessionmaker is None:
        get_engine()
    assert (_sessionmaker is not None and _read_sessionmaker is not None
            and _warm_reads is not None and _warm_writes is not None)
    with _writer_turn(None if read_only else _sqlite_writer), \
            (_warm_reads if read_only else _warm_writes).connection() as conn:
        if read_only:
            lazy = ReadSession(conn)
            try:
                yield cast(Session, lazy)
            finally:
                lazy.close()
        else:
            # The connection waits outside any transaction: the session
            # begins its own on it and commits or rolls it back.
            with _sessionmaker(bind=conn) as session, session.begin():
                yield session


class ReadSession:
    """The session of read-only work, made only when the work asks for more than a statement.

    A primary-key read spent more on building and closing SQLAlchemy's
    ``Session`` than on its statement. :func:`execute` runs a statement on
    :attr:`bind`, the kept connection, without one; anything else a
    handler asks of the session (an ORM query, ``info``, ``flush``) makes
    the real one, bound to the same connection, once per request.

    :param bind: the connection, in the transaction it keeps
        (:class:`WarmConnections`).
    """

    __slots__ = ("bind", "_session")

    def __init__(self, bind: Connection) -> None:
        self.bind = bind
        self._session: Session | None = None

    @property
    def orm(self) -> Session:
        """The real session, made on first use."""
        if self._session is None:
            assert _read_sessionmaker is not None
            self._session = _read_sessionmaker(bind=self.bind)
        return self._session

    def holds_changes(self) -> bool:
        """True when the real session holds unflushed changes (a flush refuses them)."""
        real = self._session
        return real is not None and bool(real.new or real.deleted or real.dirty)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.orm, name)

    def close(self) -> None:
        """Close the real session, if one was made."""
        if self._session is not None:
            self._session.close()
            self._session = None


def orm_session(session: Session) -> Session:
    """Return the SQLAlchemy session behind ``session`` (a :class:`ReadSession`'s own)."""
    if isinstance(session, ReadSession):
        return session.orm
    return session


def execute(session: Session, statement: Any, params: dict[str, Any]) -> Any:
    """Run a prebuilt Core statement in the session's transaction, on its connection.

    Cheaper than ``session.execute``, whose ORM layer a Core statement does
    not need; what the session holds unflushed is flushed first, as
    ``session.execute`` would, so the statement sees the request's own
    writes and comes after them.

    A read-only session is bound to its kept connection (:class:`WarmConnections`),
    whose transaction it would only join: the statement goes to that
    connection directly, without the session's transaction bookkeeping.
    A SELECT there, and an INSERT in a write transaction, run on the
    driver's cursor (:mod:`db.prepared`).

    :returns: the statement's result; for a prepared SELECT a
        :class:`db.prepared.Rows` (``one_or_none``, ``all``, ``scalar``,
        iteration), for a prepared INSERT a :class:`db.prepared.Written`
        (``rowcount``).
    """
    if isinstance(session, ReadSession):
        if session.holds_changes():
            session.orm.flush()  # refused: WriteNeeded
        if isinstance(statement, sa.Select):
            return prepared.run(session.bind, statement, params)
        return session.bind.execute(statement, params)
    if session.new or session.deleted or session.dirty:
        session.flush()
    if isinstance(statement, sa.Insert):
        return prepared.run(session.connection(), statement, params)
    return session.connection().execute(statement, params)


def _dbapi_code(error: BaseException) -> Any:
    orig = getattr(error, "orig", None)
    code = getattr(orig, "pgcode", None)
    args = getattr(orig, "args", None)
    # PyMySQL puts the server's error number first; psycopg2 has pgcode.
    if code is None and args and isinstance(args[0], int):
        code = args[0]
    return code


def _database_errors(error: BaseException) -> Iterator[sa_exc.DBAPIError]:
    """``error`` and the database errors it was raised while handling.

    A failure inside ``session.begin_nested()`` is followed by a ROLLBACK
    TO SAVEPOINT; when the first error already ended the transaction (a
    deadlock, a Galera certification failure or brute-force abort), that
    rollback fails too (MySQL 1305, "SAVEPOINT ... does not exist") and
    the error raised is the second one, with the first as its
    ``__context__``. What decides a retry is the first.
    """
    pending: list[BaseException] = [error]
    seen: set[int] = set()
    while pending and len(seen) < 16:
        current = pending.pop(0)
        if id(current) in seen or not isinstance(current, sa_exc.DBAPIError):
            continue
        seen.add(id(current))
        yield current
        pending.extend(link for link in (current.__cause__, current.__context__)
                       if link is not None)


def _retriable_here(error: sa_exc.DBAPIError) -> bool:
    if error.connection_invalidated or is_unreachable(error):
        return True
    code = _dbapi_code(error)
    return code in _PG_RETRY_CODES or code in _MYSQL_RETRY_CODES


def is_lock_timeout(error: BaseException) -> bool:
    """True when SQLite gave up waiting for another connection's lock.

    SQLite itself waits for the lock (``busy_timeout``) before it says
    "database is locked", so a busy writer makes others wait, and this
    error means the database stayed locked for all that time.
    """
    return (isinstance(error, sa_exc.OperationalError)
            and "database is locked" in str(error.orig))


def is_retriable(error: BaseException) -> bool:
    """True for a deadlock, a serialization failure or a lost connection.

    Also when such an error is hidden behind the one its rollback raised
    (see :func:`_database_errors`).
    """
    return any(_retriable_here(found) for found in _database_errors(error))


def is_unreachable(error: BaseException) -> bool:
    """True when the error says the database server cannot be reached."""
    if not isinstance(error, sa_exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    code = _dbapi_code(error)
    if isinstance(code, int) and code in _MYSQL_GONE_CODES:
        return True
    if isinstance(code, str) and code.startswith(("08", "57P")):
        return True
    if isinstance(error, sa_exc.OperationalError) and code is None:
        text = str(error.orig).lower()
        return any(part in text for part in (
            "could not connect", "connection refused", "server closed",
            "terminating connection", "connection to server", "unable to open database"))
    return False


def _again_if_stale(work: Callable[[], T]) -> T:
    """Run ``work``; once more at once if it drew a stale pooled connection.

    A connection the server dropped while it sat in the pool fails with
    ``connection_invalidated``; the pool is emptied by then, so a second
    run on a fresh connection needs no pause.
    """
    try:
        return work()
    except sa_exc.DBAPIError as error:
        if not error.connection_invalidated:
            raise
    metrics.DB_RETRY_CAUSES["stale_connection"].inc()
    return work()


def retry_cause(error: BaseException) -> str:
    """Name why a retriable error is retried: ``unreachable`` or ``deadlock``.

    ``deadlock`` stands for every conflict with another transaction
    (deadlock, serialization or Galera certification failure).
    """
    if any(is_unreachable(found) for found in _database_errors(error)):
        return "unreachable"
    return "deadlock"


def _count_retry(state: tenacity.RetryCallState) -> None:
    if state.outcome is not None and state.outcome.failed:
        error = state.outcome.exception()
        if error is not None:
            metrics.DB_RETRY_CAUSES[retry_cause(error)].inc()


def _attempt(func: Callable[[Session], T], read_only: bool) -> T:
    """Run ``func`` in one transaction (again at once on a stale connection)."""

    def once() -> T:
        with transaction(read_only) as session:
            return func(session)

    return _again_if_stale(once)


def run_in_transaction(func: Callable[[Session], T], read_only: bool = False) -> T:
    """Run ``func(session)`` in a transaction, retrying it as a whole.

    ``func`` may run more than once, so it must have no effect outside the
    session before it returns.

    :param read_only: ``func`` only reads (see :func:`transaction`).

    :returns: what ``func`` returned, after the commit.
    :raises DatabaseUnavailable: when the database stays unreachable or
        keeps failing with retriable errors.
    """
    # Nearly every request succeeds at once: the retry policy is built
    # only after a first retriable failure, with the waits and the number
    # of attempts it would have had from the start.
    try:
        return _attempt(func, read_only)
    except sa_exc.DBAPIError as error:
        if is_lock_timeout(error):
            LOG.warning("Database locked for %.0f s by another connection",
                        SQLITE_BUSY_TIMEOUT_S)
            raise exception.DatabaseUnavailable() from None
        if not is_retriable(error):
            raise
        if CONF.database.max_retries < 1:
            LOG.warning("Database unavailable after 1 attempt: %s", type(error.orig).__name__)
            raise exception.DatabaseUnavailable() from None
        metrics.DB_RETRY_CAUSES[retry_cause(error)].inc()
    time.sleep(min(CONF.database.retry_interval, 5))
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_retriable),
        stop=tenacity.stop_after_attempt(CONF.database.max_retries),
        wait=tenacity.wait_exponential(multiplier=2 * CONF.database.retry_interval,
                                       max=5),
        before_sleep=_count_retry,
        reraise=True)
    try:
        for attempt in retrying:
            with attempt:
                with transaction(read_only) as session:
                    return func(session)
    except sa_exc.DBAPIError as error:
        if is_retriable(error) or is_lock_timeout(error):
            LOG.warning("Database unavailable after %d attempts: %s",
                        CONF.database.max_retries + 1, type(error.orig).__name__)
            raise exception.DatabaseUnavailable() from None
        raise
    raise AssertionError("unreachable")  # pragma: no cover


def ping() -> str:
    """Return ``'ok'`` when the database answers, else an error code."""

    def once() -> None:
        assert _warm_reads is not None
        with _warm_reads.connection() as conn:
            conn.execute(_PING)

    try:
        get_engine()
        _again_if_stale(once)
        return "ok"
    except sa_exc.DBAPIError:
        return exception.DatabaseUnavailable.code
