"""Record the project that owns each volume's glance metadata.

Operators read and write glance metadata of their own project's volumes
only. Rows written before this revision have no project and are visible
to the cloud administrator alone until rewritten.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("volume_glance_metadata") as batch:
        batch.add_column(sa.Column("project_id", sa.String(255), nullable=True))
