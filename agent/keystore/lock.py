"""One master key rotation at a time, across every node.

The lock lives where every node meets, the database: a session-level
advisory lock on PostgreSQL (``pg_try_advisory_lock``) and MySQL/MariaDB
(``GET_LOCK``), and a lock on a file beside the database for SQLite, which
only one machine can use anyway.  It is tried, never waited for: a second
rotation is refused at once with
:class:`~agent.exception.KeyRotationInProgress`.  A crashed holder's lock
goes with its database connection (or process), so nothing stays locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import zlib
from collections.abc import Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from agent import exception

_NAME = "custos-master-key-rotation"
# PostgreSQL advisory locks are named by a 64-bit integer.
_PG_KEY = zlib.crc32(_NAME.encode())


@contextlib.contextmanager
def rotation_lock(engine: Engine) -> Iterator[None]:
    """Hold the rotation lock for the body of the ``with`` block.

    :raises KeyRotationInProgress: when another rotation holds it.
    """
    backend = engine.dialect.name
    if backend == "sqlite":
        with _file_lock(engine):
            yield
        return
    with engine.connect() as conn:
        if backend == "postgresql":
            acquired = conn.scalar(sa.text("SELECT pg_try_advisory_lock(:key)"),
                                   {"key": _PG_KEY})
            release = sa.text("SELECT pg_advisory_unlock(:key)")
            params: dict[str, object] = {"key": _PG_KEY}
        else:
            acquired = conn.scalar(sa.text("SELECT GET_LOCK(:name, 0)"), {"name": _NAME})
            release = sa.text("SELECT RELEASE_LOCK(:name)")
            params = {"name": _NAME}
        # The lock belongs to the session, not to this transaction: end the
        # transaction so the connection does not sit idle inside one.
        conn.commit()
        if not acquired:
            raise exception.KeyRotationInProgress()
        try:
            yield
        finally:
            conn.execute(release, params)
            conn.commit()


@contextlib.contextmanager
def _file_lock(engine: Engine) -> Iterator[None]:
    database = engine.url.database
    if not database or database == ":memory:":
        yield
        return
    path = os.path.abspath(database) + ".rotation-lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise exception.KeyRotationInProgress() from None
        yield
    finally:
        os.close(fd)
