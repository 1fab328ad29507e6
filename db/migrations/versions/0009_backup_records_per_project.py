"""Keep backup records per project.

A backup record was unique on its backup id across the cloud, so a
project exporting an id another project already held got a conflict
that told it the id was taken, and a project could claim an id before
its owner exported it. The record becomes unique per (backup id,
project): each project's records are its own, as its documents already
are (one service account per project). Existing rows were unique on the
id alone and so stay unique on the pair; no row changes.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("backup_records") as batch:
        batch.drop_constraint("uq_backup_records_backup_id", type_="unique")
        batch.create_unique_constraint(
            op.f("uq_backup_records_backup_id_project_id"), ["backup_id", "project_id"])
