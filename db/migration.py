"""Schema migrations through Alembic's command API.

The migration scripts live in ``db/migrations``; no ``alembic.ini`` is
needed, the configuration is built here from the engine in use.
"""

from __future__ import annotations

import os

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import types
from sqlalchemy.engine import Engine

from db import api

MIGRATIONS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")


def compare_type(context: MigrationContext, inspected_column: object,
                 metadata_column: object, inspected_type: types.TypeEngine,
                 metadata_type: types.TypeEngine) -> bool | None:
    """Tell Alembic's comparison whether a column's type drifted.

    MariaDB stores a ``LargeBinary`` of a given length as the BLOB kind
    that holds it (MEDIUMBLOB for 1 MiB), which is the model's type, not
    drift. Every other pair is left to Alembic (None).
    """
    if isinstance(metadata_type, types.LargeBinary) and isinstance(
            inspected_type, types._Binary):
        return False
    return None


def _config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS_DIR)
    config.attributes["engine"] = engine
    return config


def db_sync(revision: str = "head", engine: Engine | None = None) -> None:
    """Upgrade the schema to ``revision`` (default: the newest)."""
    command.upgrade(_config(engine or api.get_engine()), revision)


def head_revision() -> str:
    """Return the newest revision the scripts define."""
    script = ScriptDirectory(MIGRATIONS_DIR)
    head = script.get_current_head()
    assert head is not None
    return head


def db_version(engine: Engine | None = None) -> str | None:
    """Return the revision the database is at, or None when it is empty."""
    with (engine or api.get_engine()).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
