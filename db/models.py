"""The tables custos keeps, as SQLAlchemy 2.x typed models.

Constraint names come from one naming convention, so Alembic gives them
the same names on SQLite, PostgreSQL and MariaDB. Each string column that
callers fill is at most 255 characters, which also keeps composite unique
indexes within MariaDB's 3072-byte key limit under utf8mb4.
"""

from __future__ import annotations

import datetime

from typing import Any

from sqlalchemy import (JSON, Boolean, DateTime, ForeignKey, Index, Integer, LargeBinary,
                        MetaData, String, Text, UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: How MariaDB compares the strings custos keeps: byte for byte (ids,
#: namespaces, keys and usages are case- and accent-sensitive, as on
#: PostgreSQL and SQLite) and NO PAD, so that a trailing space makes a
#: different value; utf8mb4_bin itself is PAD SPACE and ignores it.
#: Migration 0008 converts the columns of older databases.
EXACT_COLLATION = "utf8mb4_nopad_bin"
#: The same on MySQL 8, which lacks the MariaDB name.
MYSQL_EXACT_COLLATION = "utf8mb4_0900_bin"


def exact(length: int) -> TypeEngine[str]:
    """A VARCHAR of ``length`` compared byte for byte (:data:`EXACT_COLLATION` on MariaDB).

    The MySQL dialect serves MariaDB and MySQL alike; on MySQL 8 the
    column compares with :data:`MYSQL_EXACT_COLLATION` (migration 0008).
    """
    return String(length).with_variant(String(length, collation=EXACT_COLLATION), "mysql",
                                       "mariadb")


# Large enough for a 64 KiB secret value plus its nonce and tag; MariaDB
# maps this length to MEDIUMBLOB where a plain BLOB would stop at 64 KiB.
BLOB_LENGTH = 1 << 20


def utcnow() -> datetime.datetime:
    """Return the current UTC time without tzinfo, as every column stores it."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class PurgeMixin:
    """A row an event purged: unreadable while ``deleted_at`` is set.

    Purges only mark rows; they are destroyed once ``[events] purge_grace``
    has passed since ``deleted_at`` (:mod:`agent.events.purge`), and until
    then ``custos-manage restore`` brings them back.
    """

    deleted_at: Mapped[datetime.datetime | None] = mapped_column(DateTime, index=True)


class TimestampMixin:
    # Nullable in the schema (migration 0001), always filled by the default.
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow,
                                                          nullable=True)
    updated_at: Mapped[datetime.datetime | None] = mapped_column(
        DateTime, onupdate=utcnow)


class DriverInitiatorData(TimestampMixin, Base):
    """One key of a volume driver's private data for one initiator."""

    __tablename__ = "driver_initiator_data"
    __table_args__ = (UniqueConstraint("initiator", "namespace", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    initiator: Mapped[str] = mapped_column(exact(255))
    namespace: Mapped[str] = mapped_column(exact(255))
    key: Mapped[str] = mapped_column(exact(255))
    value: Mapped[str | None] = mapped_column(exact(255))


class Secret(PurgeMixin, TimestampMixin, Base):
    """A persistent secret; ephemeral ones never reach this table.

    The value is stored as AES-256-GCM ciphertext under its own data key,
    which is kept wrapped by the master key named in ``master_key_id``.

    A secret belongs either to a project (``project_id``) or to the volume
    drivers of one initiator data namespace (``driver_namespace``), never
    to both. A usage is unique within its owner, so two projects may each
    hold ``ceph client.cinder`` and a driver's usages never meet a
    project's.

    A purged secret gives its usage up: it moves to ``purged_usage_type``
    and ``purged_usage_id``, out of the unique index, so a new secret may
    take it; a restore moves it back.
    """

    __tablename__ = "secrets"
    __table_args__ = (UniqueConstraint("uuid"),
                      UniqueConstraint("project_id", "usage_type", "usage_id"),
                      UniqueConstraint("driver_namespace", "usage_type", "usage_id"),
                      Index(None, "project_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(exact(36))
    project_id: Mapped[str | None] = mapped_column(exact(255))
    driver_namespace: Mapped[str | None] = mapped_column(exact(255))
    usage_type: Mapped[str | None] = mapped_column(exact(16))
    usage_id: Mapped[str | None] = mapped_column(exact(255))
    description: Mapped[str | None] = mapped_column(exact(1024))
    private: Mapped[bool] = mapped_column(Boolean, default=False)
    generated: Mapped[bool] = mapped_column(Boolean, default=False)
    value: Mapped[bytes | None] = mapped_column(LargeBinary(BLOB_LENGTH))
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary(1024))
    master_key_id: Mapped[str | None] = mapped_column(exact(64))
    purged_usage_type: Mapped[str | None] = mapped_column(exact(16))
    purged_usage_id: Mapped[str | None] = mapped_column(exact(255))


class SigningKey(TimestampMixin, Base):
    """An HMAC key for backup metadata; only the ``active`` one signs."""

    __tablename__ = "signing_keys"
    __table_args__ = (UniqueConstraint("key_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[str] = mapped_column(exact(36))
    state: Mapped[str] = mapped_column(exact(16))
    material: Mapped[bytes] = mapped_column(LargeBinary(1024))
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary(1024))
    master_key_id: Mapped[str] = mapped_column(exact(64))
    deactivated_at: Mapped[datetime.datetime | None] = mapped_column(DateTime)


class VolumeGlanceMetadata(PurgeMixin, TimestampMixin, Base):
    """One key of the glance metadata a volume carries (billing, licences).

    Kept per (project, volume id): what one project writes for a volume id
    never meets another project's rows for the same id. Rows without a
    project predate ownership and are the administrator's alone.
    """

    __tablename__ = "volume_glance_metadata"
    __table_args__ = (UniqueConstraint("project_id", "volume_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    volume_id: Mapped[str] = mapped_column(exact(36))
    key: Mapped[str] = mapped_column(exact(255))
    value: Mapped[str] = mapped_column(Text)
    project_id: Mapped[str | None] = mapped_column(exact(255))


class BackupRecord(TimestampMixin, Base):
    """Where the metadata document of one backup is kept, and for whom.

    A backup id is unique within its project only: one project's record
    never decides what another project may export under the same id.
    The backup id leads the key so that an auditor's lookup by id alone
    uses the index too.
    """

    __tablename__ = "backup_records"
    __table_args__ = (UniqueConstraint("backup_id", "project_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    backup_id: Mapped[str] = mapped_column(exact(36))
    volume_id: Mapped[str] = mapped_column(exact(36))
    project_id: Mapped[str | None] = mapped_column(exact(255))
    account: Mapped[str] = mapped_column(exact(255))
    key_id: Mapped[str | None] = mapped_column(exact(36))


class InstanceSystemMetadata(PurgeMixin, TimestampMixin, Base):
    """Agent-owned facts about an instance, such as the roles it booted with.

    ``project_id`` is the project of the request that recorded the row
    (None when a service recorded it for no project); an instance's
    deletion purges rows of the project it names and rows of none.
    """

    __tablename__ = "instance_system_metadata"
    __table_args__ = (UniqueConstraint("instance_uuid", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_uuid: Mapped[str] = mapped_column(exact(36))
    key: Mapped[str] = mapped_column(exact(255))
    value: Mapped[str] = mapped_column(Text)
    project_id: Mapped[str | None] = mapped_column(exact(255))


class MasterKeyState(TimestampMixin, Base):
    """Which master key wraps new data keys, which is staged, which retires.

    One row (``id`` 1). Writers that wrap a data key read it with a shared
    row lock, so promoting the staged key (an update of this row) waits
    for them: once it commits, nothing wraps under the old key any more.
    The staged key travels to the other nodes wrapped under the primary
    one; it is dropped from the row when promoted.
    """

    __tablename__ = "master_key_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    primary_key_id: Mapped[str] = mapped_column(exact(64))
    staged_key_id: Mapped[str | None] = mapped_column(exact(64))
    staged_wrapped: Mapped[bytes | None] = mapped_column(LargeBinary(1024))
    staged_wrapped_by: Mapped[str | None] = mapped_column(exact(64))
    previous_key_id: Mapped[str | None] = mapped_column(exact(64))


class MasterKeyHolder(Base):
    """A node (agent host) known to hold a master key in its key files."""

    __tablename__ = "master_key_holders"

    host: Mapped[str] = mapped_column(exact(255), primary_key=True)
    key_id: Mapped[str] = mapped_column(exact(64), primary_key=True)
    seen_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)


class ManagedKey(TimestampMixin, Base):
    """An object kept for a castellan caller: a key, certificate, passphrase or data.

    The object's bytes are sealed as a secret's value is, under a data key
    of their own wrapped by the master key named in ``master_key_id``.
    """

    __tablename__ = "managed_keys"
    __table_args__ = (UniqueConstraint("uuid"),
                      Index(None, "project_id", "object_type"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(exact(36))
    project_id: Mapped[str] = mapped_column(exact(255))
    object_type: Mapped[str] = mapped_column(exact(16))
    algorithm: Mapped[str | None] = mapped_column(exact(255))
    bit_length: Mapped[int | None] = mapped_column(Integer)
    name: Mapped[str | None] = mapped_column(exact(255))
    expiration: Mapped[str | None] = mapped_column(exact(64))
    value: Mapped[bytes] = mapped_column(LargeBinary(BLOB_LENGTH))
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary(1024))
    master_key_id: Mapped[str] = mapped_column(exact(64))


class KeyConsumer(TimestampMixin, Base):
    """A resource that uses a managed key (a volume, an image), as castellan records it.

    Three 255-character columns and the key id stay within MariaDB's
    3072-byte index limit under utf8mb4.
    """

    __tablename__ = "key_consumers"
    __table_args__ = (UniqueConstraint("key_id", "service", "resource_type", "resource_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[int] = mapped_column(Integer, ForeignKey("managed_keys.id",
                                                             ondelete="CASCADE"))
    service: Mapped[str] = mapped_column(exact(255))
    resource_type: Mapped[str] = mapped_column(exact(255))
    resource_id: Mapped[str] = mapped_column(exact(255))


class RememberedAnswer(Base):
    """The answer an agent gave to one request of a method that creates or deletes.

    Keyed by the message's id, the caller's project and the method, so a
    copy of the request that arrives again gets the same answer
    (:mod:`agent.answers`).
    Holds only what those methods answer: UUIDs, or nothing.
    """

    __tablename__ = "remembered_answers"
    __table_args__ = (Index(None, "created_at"),)

    request_id: Mapped[str] = mapped_column(exact(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(exact(255), primary_key=True)
    method: Mapped[str] = mapped_column(exact(64), primary_key=True)
    answer: Mapped[Any] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)
