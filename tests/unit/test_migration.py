"""The schema revisions the agent checks at start-up, read without Alembic."""

from __future__ import annotations

import subprocess
import sys

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from db import api as db_api
from db import migration


def test_head_revision_is_alembic_head():
    assert migration.head_revision() == ScriptDirectory(migration.MIGRATIONS_DIR).get_current_head()


def test_db_version_is_what_alembic_reads(conf):
    engine = db_api.configure()
    assert migration.db_version() is None
    migration.db_sync("0001")
    assert migration.db_version() == "0001"
    migration.db_sync()
    with engine.connect() as conn:
        assert migration.db_version() == MigrationContext.configure(conn).get_current_revision()
    assert migration.db_version() == migration.head_revision()


def test_the_agent_service_does_not_import_alembic():
    code = "import sys, agent.service; print('alembic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
