"""Keep castellan's managed objects: keys, certificates, passphrases, data.

``managed_keys`` holds each object sealed as secret values are, with the
metadata castellan reports (type, algorithm, bit length, name,
expiration); ``key_consumers`` records the resources that use a key, so
that it is not deleted under them by accident.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from alembic import op
import sqlalchemy as sa

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BLOB_LENGTH = 1 << 20


def _timestamps() -> list[sa.Column]:
    return [sa.Column("created_at", sa.DateTime(), nullable=True),
            sa.Column("updated_at", sa.DateTime(), nullable=True)]


def upgrade() -> None:
    op.create_table(
        "managed_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        *_timestamps(),
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("project_id", sa.String(255), nullable=False),
        sa.Column("object_type", sa.String(16), nullable=False),
        sa.Column("algorithm", sa.String(255), nullable=True),
        sa.Column("bit_length", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("expiration", sa.String(64), nullable=True),
        sa.Column("value", sa.LargeBinary(BLOB_LENGTH), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(1024), nullable=False),
        sa.Column("master_key_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_managed_keys")),
        sa.UniqueConstraint("uuid", name=op.f("uq_managed_keys_uuid")),
    )
    op.create_index(op.f("ix_managed_keys_project_id_object_type"), "managed_keys",
                    ["project_id", "object_type"])
    op.create_table(
        "key_consumers",
        sa.Column("id", sa.Integer(), nullable=False),
        *_timestamps(),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("service", sa.String(255), nullable=False),
        sa.Column("resource_type", sa.String(255), nullable=False),
        sa.Column("resource_id", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_key_consumers")),
        sa.ForeignKeyConstraint(["key_id"], ["managed_keys.id"], ondelete="CASCADE",
                                name=op.f("fk_key_consumers_key_id_managed_keys")),
        sa.UniqueConstraint("key_id", "service", "resource_type", "resource_id",
                            name=op.f("uq_key_consumers_key_id_service_resource_type_"
                                      "resource_id")),
    )
