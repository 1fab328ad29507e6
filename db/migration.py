"""Schema migrations through Alembic's command API.

The migration scripts live in ``db/migrations``; no ``alembic.ini`` is
needed, the configuration is built here from the engine in use.

The agent checks the schema at every start, so :func:`head_revision` and
:func:`db_version` answer without importing Alembic: the first reads the
scripts' revision identifiers as text, the second reads Alembic's version
table with one query. Only :func:`db_sync` runs Alembic itself.
"""

from __future__ import annotations

import ast
import os
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import types
from sqlalchemy.engine import Engine

from db import api, models

MIGRATIONS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")
VERSIONS_DIR = os.path.join(MIGRATIONS_DIR, "versions")
#: The table in which Alembic records the revision a database is at.
VERSION_TABLE = "alembic_version"


if TYPE_CHECKING:
    from alembic.runtime.migration import MigrationContext


def compare_type(context: MigrationContext, inspected_column: object,
                 metadata_column: object, inspected_type: types.TypeEngine,
                 metadata_type: types.TypeEngine) -> bool | None:
    """Tell Alembic's comparison whether a column's type drifted.

    MariaDB stores a ``LargeBinary`` of a given length as the BLOB kind
    that holds it (MEDIUMBLOB for 1 MiB), which is the model's type, not
    drift. A string column whose model names a collation (MariaDB) has
    drifted when the database compares it another way. Every other pair
    is left to Alembic (None).
    """
    if isinstance(metadata_type, types.LargeBinary) and isinstance(
            inspected_type, types._Binary):
        return False
    # Alembic does not compare collations; on MariaDB the models name the
    # one their strings are compared with (models.EXACT_COLLATION).
    wanted = getattr(metadata_type.dialect_impl(context.dialect), "collation", None)
    if wanted == models.EXACT_COLLATION and not getattr(context.dialect, "is_mariadb", True):
        wanted = models.MYSQL_EXACT_COLLATION
    if wanted is not None and _collation(context, inspected_column) != wanted:
        return True
    return None


def _collation(context: MigrationContext, column: Any) -> str | None:
    """The collation a MySQL or MariaDB column compares with.

    Read from information_schema: reflection leaves out a column's
    collation when it is the table's default.
    """
    assert context.connection is not None
    return context.connection.exec_driver_sql(
        "SELECT collation_name FROM information_schema.columns WHERE table_schema = "
        "DATABASE() AND table_name = %s AND column_name = %s",
        (column.table.name, column.name)).scalar()


def _config(engine: Engine) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", MIGRATIONS_DIR)
    config.attributes["engine"] = engine
    return config


def db_sync(revision: str = "head", engine: Engine | None = None) -> None:
    """Upgrade the schema to ``revision`` (default: the newest)."""
    from alembic import command

    command.upgrade(_config(engine or api.get_engine()), revision)


def _script_revisions(path: str) -> tuple[str | None, Any]:
    """``(revision, down_revision)`` assigned at the top of one script."""
    found: dict[str, Any] = {}
    with open(path, encoding="utf-8") as script:
        tree = ast.parse(script.read(), path)
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                    found[target.id] = ast.literal_eval(node.value) if node.value else None
    return found.get("revision"), found.get("down_revision")


def head_revision() -> str:
    """Return the newest revision the scripts define (the one nothing revises).

    :raises RuntimeError: when the scripts do not have exactly one head.
    """
    revisions: set[str] = set()
    revised: set[str] = set()
    for name in sorted(os.listdir(VERSIONS_DIR)):
        if not name.endswith(".py"):
            continue
        revision, down = _script_revisions(os.path.join(VERSIONS_DIR, name))
        if revision is None:
            continue
        revisions.add(revision)
        if isinstance(down, str):
            revised.add(down)
        elif isinstance(down, (tuple, list)):
            revised.update(down)
    heads = revisions - revised
    if len(heads) != 1:
        raise RuntimeError(f"migration scripts have {len(heads)} heads: {sorted(heads)}")
    return heads.pop()


def db_version(engine: Engine | None = None) -> str | None:
    """Return the revision the database is at, or None when it is empty.

    :raises sqlalchemy.exc.DBAPIError: when the database cannot be read.
    """
    with (engine or api.get_engine()).connect() as conn:
        if not sa.inspect(conn).has_table(VERSION_TABLE):
            return None
        versions = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars()
        return next(iter(versions), None)
