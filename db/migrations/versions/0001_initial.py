"""Initial schema: secrets, signing keys, initiator data, glance metadata,
backup records and instance system metadata.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from alembic import op
import sqlalchemy as sa

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BLOB_LENGTH = 1 << 20


def _timestamps() -> list[sa.Column]:
    return [sa.Column("created_at", sa.DateTime(), nullable=True),
            sa.Column("updated_at", sa.DateTime(), nullable=True)]


def upgrade() -> None:
    op.create_table(
        "driver_initiator_data",
        sa.Column("id", sa.Integer(), nullable=False),
        *_timestamps(),
        sa.Column("initiator", sa.String(255), nullable=False),
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_driver_initiator_data")),
        sa.UniqueConstraint("initiator", "namespace", "key",
                            name=op.f("uq_driver_initiator_data_initiator_namespace_key")),
    )
    op.create_table(
        "secrets",
        sa.Column("id", sa.Integer(), nullable=False),
        *_timestamps(),
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("project_id", sa.String(255), nullable=True),
        sa.Column("usage_type", sa.String(16), nullable=True),
        sa.Column("usage_id", sa.String(255), nullable=True),
        sa.Column("description", sa.String(1024), nullable=True),
        sa.Column("private", sa.Boolean(), nullable=False),
        sa.Column("generated", sa.Boolean(), nullable=False),
        sa.Column("value", sa.LargeBinary(BLOB_LENGTH), nullable=True),
        sa.Column("wrapped_key", sa.LargeBinary(1024), nullable=True),
        sa.Column("master_key_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_secrets")),
        sa.UniqueConstraint("uuid", name=op.f("uq_secrets_uuid")),
        sa.UniqueConstraint("usage_type", "usage_id",
                            name=op.f("uq_secrets_usage_type_usage_id")),
    )
    op.create_index(op.f("ix_secrets_project_id"), "secrets", ["project_id"])
    op.create_table(
        "signing_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        *_timestamps(),
        sa.Column("key_id", sa.String(36), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("material", sa.LargeBinary(1024), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(1024), nullable=False),
        sa.Column("master_key_id", sa.String(64), nullable=False),
        sa.Column("deactivated_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signing_keys")),
        sa.UniqueConstraint("key_id", name=op.f("uq_signing_keys_key_id")),
    )
    op.create_table(
        "volume_glance_metadata",
        sa.Column("id", sa.Integer(), nullable=False),
        *_timestamps(),
        sa.Column("volume_id", sa.String(36), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_glance_metadata")),
        sa.UniqueConstraint("volume_id", "key",
                            name=op.f("uq_volume_glance_metadata_volume_id_key")),
    )
    op.create_table(
        "backup_records",
        sa.Column("id", sa.Integer(), nullable=False),
        *_timestamps(),
        sa.Column("backup_id", sa.String(36), nullable=False),
        sa.Column("volume_id", sa.String(36), nullable=False),
        sa.Column("project_id", sa.String(255), nullable=True),
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("key_id", sa.String(36), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backup_records")),
        sa.UniqueConstraint("backup_id", name=op.f("uq_backup_records_backup_id")),
    )
    op.create_table(
        "instance_system_metadata",
        sa.Column("id", sa.Integer(), nullable=False),
        *_timestamps(),
        sa.Column("instance_uuid", sa.String(36), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instance_system_metadata")),
        sa.UniqueConstraint("instance_uuid", "key",
                            name=op.f("uq_instance_system_metadata_instance_uuid_key")),
    )
