"""Record the staged, primary and previous master keys and who holds them.

A master key rotation promotes a staged key that every node already
holds, and retires the previous key once no row is wrapped under it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "master_key_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.Column("primary_key_id", sa.String(64), nullable=False),
        sa.Column("staged_key_id", sa.String(64), nullable=True),
        sa.Column("staged_wrapped", sa.LargeBinary(1024), nullable=True),
        sa.Column("staged_wrapped_by", sa.String(64), nullable=True),
        sa.Column("previous_key_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_master_key_state")),
    )
    op.create_table(
        "master_key_holders",
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("host", "key_id", name=op.f("pk_master_key_holders")),
    )
