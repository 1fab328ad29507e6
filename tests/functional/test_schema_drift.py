"""The Alembic migrations build exactly the schema the models describe.

Alembic's own comparison (the one ``alembic revision --autogenerate``
uses) runs against a database migrated to head on SQLite, PostgreSQL and
MariaDB: a column, index, constraint or type that one side has and the
other lacks is drift, and fails here before an agent meets it.
"""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from db import api as db_api
from db import migration
from db.models import Base


def test_migrations_match_the_models(database_url):
    engine = db_api.create_engine(database_url)
    try:
        migration.db_sync(engine=engine)
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": migration.compare_type,
                                  "compare_server_default": True})
            drift = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()

    assert drift == [], "models and migrations disagree:\n" + "\n".join(map(str, drift))
