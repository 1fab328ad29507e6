"""Test databases on SQLite, PostgreSQL and MariaDB, migrated once per session.

Each kind is migrated to head once, into a template: a SQLite file that
is copied, a PostgreSQL database that ``CREATE DATABASE ... TEMPLATE``
clones. MariaDB has no template databases, so each of its databases is
migrated in this process, which still spares a ``custos-manage``
process start. Templates are dropped by :func:`drop_templates` at the
end of the session.
"""

from __future__ import annotations

import shutil
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

from agent.keystore import masterkey, signing
from db import api as db_api
from db import migration

PG_ADMIN: dict[str, Any] = dict(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
MYSQL_ADMIN: dict[str, Any] = dict(host="127.0.0.1", port=3306, user="root", password="")

_lock = threading.Lock()
_templates: dict[str, str] = {}  # kind -> SQLite path or PostgreSQL database name
_template_dir: Path | None = None


def set_template_dir(path: Path) -> None:
    """Where the session's SQLite template goes (a session temp dir)."""
    global _template_dir
    _template_dir = path


def _upgrade(url: str) -> None:
    engine = db_api.create_engine(url)
    try:
        if migration.db_version(engine) != migration.head_revision():
            migration.db_sync(engine=engine)
        if engine.dialect.name == "sqlite":
            # One self-contained file: nothing left in a write-ahead log. On
            # the driver's connection, outside the write transaction (BEGIN
            # IMMEDIATE) SQLAlchemy would open, where a checkpoint cannot run.
            raw = engine.raw_connection()
            try:
                raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                raw.close()
    finally:
        engine.dispose()


def _pg_execute(statement: str, dbname: str = "postgres") -> None:
    import psycopg2

    conn = psycopg2.connect(**{**PG_ADMIN, "dbname": dbname})
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def _sqlite_template() -> Path:
    assert _template_dir is not None
    with _lock:
        if "sqlite" not in _templates:
            path = _template_dir / "template.sqlite"
            _upgrade(f"sqlite:///{path}")
            _templates["sqlite"] = str(path)
        return Path(_templates["sqlite"])


def _pg_template() -> str:
    with _lock:
        if "postgresql" not in _templates:
            name = f"custos_template_{uuid.uuid4().hex[:12]}"
            _pg_execute(f'CREATE DATABASE "{name}"')
            _upgrade(f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}")
            _templates["postgresql"] = name
        return _templates["postgresql"]


def pg_url(name: str) -> str:
    """SQLAlchemy URL of database ``name`` on the shared PostgreSQL."""
    return f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"


def create_postgresql(migrated: bool = False) -> tuple[str, Callable[[], None]]:
    """A new PostgreSQL database: empty, or a clone of the migrated template.

    :returns: its URL and a function that drops it.
    """
    name = f"custos_test_{uuid.uuid4().hex[:12]}"
    if migrated:
        _pg_execute(f'CREATE DATABASE "{name}" TEMPLATE "{_pg_template()}"')
    else:
        _pg_execute(f'CREATE DATABASE "{name}"')
    return pg_url(name), lambda: _pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create_mysql(migrated: bool = False,
                 collation: str = "utf8mb4_bin") -> tuple[str, Callable[[], None]]:
    """A new MariaDB database: empty, or migrated to head.

    :param collation: the database's default collation, which tables
        created in it take (the server's own default: ``utf8mb4_general_ci``).
    :returns: its URL and a function that drops it.
    """
    import pymysql

    name = f"custos_test_{uuid.uuid4().hex[:12]}"

    def execute(statement: str) -> None:
        conn = pymysql.connect(**MYSQL_ADMIN)
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
        finally:
            conn.close()

    execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE {collation}")
    url = f"mysql+pymysql://root@127.0.0.1:3306/{name}?charset=utf8mb4"
    if migrated:
        _upgrade(url)
    return url, lambda: execute(f"DROP DATABASE IF EXISTS `{name}`")


def migrate(url: str) -> None:
    """Bring the database at ``url`` to head, as ``custos-manage db sync`` does.

    An absent or empty SQLite file becomes a copy of the template, an
    empty database on the shared PostgreSQL a clone of it; any other
    database is left alone when it is at head and upgraded here otherwise
    (outside a test session, with no template, always).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and _template_dir:
        path = Path(parsed.database)
        if not path.exists() or path.stat().st_size == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(_sqlite_template(), path)
            return
    if (parsed.get_backend_name() == "postgresql" and _template_dir and parsed.database
            and (parsed.host, parsed.port or 5432) == (PG_ADMIN["host"], PG_ADMIN["port"])
            and _pg_is_empty(parsed.database)):
        # Nothing is connected to a database nothing was put in: replace
        # it, under the same name, with a clone of the migrated template.
        _pg_execute(f'DROP DATABASE "{parsed.database}"')
        _pg_execute(f'CREATE DATABASE "{parsed.database}" TEMPLATE "{_pg_template()}"')
        return
    _upgrade(url)


def _pg_is_empty(name: str) -> bool:
    import psycopg2

    conn = psycopg2.connect(**{**PG_ADMIN, "dbname": name})
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM information_schema.tables "
                        "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')")
            row = cur.fetchone()
    finally:
        conn.close()
    return row is not None and row[0] == 0


def prepare_state(url: str, key_file: Path) -> None:
    """Migrate ``url`` and create the master and signing keys, as an operator would.

    The same state ``custos-manage db sync`` and ``keys init`` leave,
    without starting two processes. An existing key file is kept.
    """
    migrate(url)
    if key_file.exists():
        return
    masterkey.init_key_file(str(key_file))
    ring = masterkey.MasterKeyRing(str(key_file))
    ring.load()
    engine = db_api.create_engine(url)
    try:
        with sessionmaker(bind=engine)() as session, session.begin():
            signing.ensure_active(session, ring)
    finally:
        engine.dispose()


def drop_templates() -> None:
    """Drop the session's template databases and forget them."""
    with _lock:
        name = _templates.pop("postgresql", None)
        _templates.pop("sqlite", None)
    if name:
        _pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
