"""Purges mark rows deleted instead of destroying them.

A purge triggered by another service's event (a deleted volume or
instance) marks the rows it concerns (``deleted_at``); they are destroyed
once ``[events] purge_grace`` has passed, and can be restored until then.
A purged secret's usage moves to ``purged_usage_type`` and
``purged_usage_id``, out of the per-project unique index, so that it never
blocks a new secret; a restore moves it back. Boot roles now record the
project of the request that stored them, which an instance's deletion
must name to purge them.

Only nullable columns and indexes are added: agents of the previous
release keep serving on this schema (they destroy instead of marking).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from alembic import op
import sqlalchemy as sa

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_PURGED_TABLES = ("secrets", "volume_glance_metadata", "instance_system_metadata")


def upgrade() -> None:
    for table in _PURGED_TABLES:
        op.add_column(table, sa.Column("deleted_at", sa.DateTime(), nullable=True))
        op.create_index(op.f(f"ix_{table}_deleted_at"), table, ["deleted_at"])
    op.add_column("secrets", sa.Column("purged_usage_type", sa.String(16), nullable=True))
    op.add_column("secrets", sa.Column("purged_usage_id", sa.String(255), nullable=True))
    op.add_column("instance_system_metadata",
                  sa.Column("project_id", sa.String(255), nullable=True))
