"""Keep secret usages and glance metadata per owner.

Secrets: a usage is unique within its owner, a project or a volume
driver's namespace (``driver_namespace``), instead of across the cloud.
The CHAP passwords the iSCSI driver generated before this revision
become its own: a secret that an initiator's ``chap_secret_uuid`` names,
that belongs to no project, is private, generated, and holds exactly the
usage the driver gave it (``chap:<namespace>:<initiator>`` or its hashed
form) moves to the driver's namespace with the initiator as usage id.
Anything else stays where it is. The pointer rows stay too: the new
driver never reads them, while agents of the previous release, still
serving during a rolling upgrade, keep finding the same credentials
through them.

Glance metadata: unique per (project, volume id, key), so one project's
write never meets another project's rows for the same volume id.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

import hashlib

from alembic import op
import sqlalchemy as sa

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_MAX_USAGE_ID = 255


def _legacy_chap_usage(namespace: str, initiator: str) -> str:
    usage_id = f"chap:{namespace}:{initiator}"
    if len(usage_id) <= _MAX_USAGE_ID:
        return usage_id
    digest = hashlib.sha256(f"{namespace}\x00{initiator}".encode()).hexdigest()
    return f"chap-sha256:{digest}"


def _adopt_chap_secrets() -> None:
    bind = op.get_bind()
    data = sa.table("driver_initiator_data",
                    sa.column("initiator", sa.String), sa.column("namespace", sa.String),
                    sa.column("key", sa.String), sa.column("value", sa.String))
    secrets = sa.table("secrets", sa.column("id", sa.Integer), sa.column("uuid", sa.String),
                       sa.column("project_id", sa.String),
                       sa.column("driver_namespace", sa.String),
                       sa.column("usage_type", sa.String), sa.column("usage_id", sa.String),
                       sa.column("private", sa.Boolean), sa.column("generated", sa.Boolean))
    pointers = bind.execute(sa.select(data.c.initiator, data.c.namespace, data.c.value)
                            .where(data.c.key == "chap_secret_uuid")).all()
    for initiator, namespace, secret_uuid in pointers:
        if len(initiator) > _MAX_USAGE_ID:
            continue
        bind.execute(
            sa.update(secrets)
            .where(secrets.c.uuid == secret_uuid, secrets.c.project_id.is_(None),
                   secrets.c.driver_namespace.is_(None), secrets.c.usage_type == "iscsi",
                   secrets.c.usage_id == _legacy_chap_usage(namespace, initiator),
                   secrets.c.private == sa.true(), secrets.c.generated == sa.true())
            .values(driver_namespace=namespace, usage_id=initiator))


def upgrade() -> None:
    with op.batch_alter_table("secrets") as batch:
        batch.add_column(sa.Column("driver_namespace", sa.String(255), nullable=True))
        batch.drop_constraint("uq_secrets_usage_type_usage_id", type_="unique")
    _adopt_chap_secrets()
    with op.batch_alter_table("secrets") as batch:
        batch.create_unique_constraint(
            op.f("uq_secrets_project_id_usage_type_usage_id"),
            ["project_id", "usage_type", "usage_id"])
        batch.create_unique_constraint(
            op.f("uq_secrets_driver_namespace_usage_type_usage_id"),
            ["driver_namespace", "usage_type", "usage_id"])
    with op.batch_alter_table("volume_glance_metadata") as batch:
        batch.drop_constraint("uq_volume_glance_metadata_volume_id_key", type_="unique")
        batch.create_unique_constraint(
            op.f("uq_volume_glance_metadata_project_id_volume_id_key"),
            ["project_id", "volume_id", "key"])
