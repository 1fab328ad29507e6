"""The key store: castellan's managed objects, sealed, within their project.

Each object is a row of ``managed_keys``.  Its bytes are sealed by
:mod:`agent.keystore.envelope` exactly as a secret's value is (a data key
of its own, AES-256-GCM, kind ``managed-key`` and the object's UUID as
associated data), so bytes copied onto another row do not open and
``custos-manage keys rotate-master`` re-wraps the data keys with the
secrets'.

Ownership follows the caller's :class:`~agent.policy.Scope`: an
object belongs to the project that stored it; another project gets
:class:`~agent.exception.ManagedKeyNotFound`, exactly as for a UUID that
never existed; the administrator's scope sees every project.

Consumers (castellan's ``add_consumer``) are rows of ``key_consumers``;
a key that has any is deleted only with ``force``.

Every method works in the caller's session and leaves committing to it;
nothing here logs, and values leave only through :meth:`KeyStore.get`
and :meth:`KeyStore.list_keys` when asked for.
"""

from __future__ import annotations

import dataclasses
import datetime
import uuid as uuid_lib
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from agent import exception, policy
from agent.keystore import envelope
from agent.keystore.masterkey import MasterKeyRing
from agent.policy import Scope
from db import models, upsert

__all__ = ["KIND", "Consumer", "KeyInfo", "KeyStore", "NewKey"]

#: Envelope kind of managed objects (part of their associated data).
KIND = "managed-key"


@dataclasses.dataclass(frozen=True)
class Consumer:
    """A resource that uses a key: ``service``, ``resource_type``, ``resource_id``."""

    service: str
    resource_type: str
    resource_id: str

    def as_dict(self) -> dict[str, str]:
        """Return ``{service, resource_type, resource_id}``, as castellan shows it."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class NewKey:
    """What a caller gives for an object to be kept (its bytes apart).

    :param object_type: one of :data:`agent.keys.kinds.OBJECT_TYPES`.
    """

    object_type: str
    algorithm: str | None = None
    bit_length: int | None = None
    name: str | None = None
    expiration: str | None = None


@dataclasses.dataclass(frozen=True)
class KeyInfo:
    """What is known of one managed object, never its bytes.

    :param created: POSIX seconds, as castellan's objects carry it.
    """

    uuid: str
    project_id: str
    object_type: str
    algorithm: str | None
    bit_length: int | None
    name: str | None
    expiration: str | None
    created: int
    consumers: tuple[Consumer, ...] = ()

    def describe(self, value: bytes | None) -> dict[str, Any]:
        """Return the reply form: the metadata, ``value`` (bytes or None) and consumers.

        The value stays bytes here; the endpoint encodes it for the wire.
        """
        return {"uuid": self.uuid, "object_type": self.object_type,
                "algorithm": self.algorithm, "bit_length": self.bit_length,
                "name": self.name, "created": self.created,
                "expiration": self.expiration, "value": value,
                "consumers": [c.as_dict() for c in self.consumers]}

    def payload(self) -> dict[str, Any]:
        """Return the notification payload naming this object (never its bytes)."""
        return {"uuid": self.uuid, "project_id": self.project_id,
                "object_type": self.object_type, "algorithm": self.algorithm,
                "bit_length": self.bit_length, "name": self.name}


def _created(row: models.ManagedKey) -> int:
    # Columns hold naive UTC times (models.utcnow).
    stamp = row.created_at or models.utcnow()
    return int(stamp.replace(tzinfo=datetime.timezone.utc).timestamp())


def _info(row: models.ManagedKey, consumers: Iterable[Consumer] = ()) -> KeyInfo:
    return KeyInfo(uuid=row.uuid, project_id=row.project_id, object_type=row.object_type,
                   algorithm=row.algorithm, bit_length=row.bit_length, name=row.name,
                   expiration=row.expiration, created=_created(row),
                   consumers=tuple(consumers))


class KeyStore:
    """Managed objects of every project, sealed under the master key ring.

    :param ring: the master key ring that wraps every object's data key.
    """

    def __init__(self, ring: MasterKeyRing) -> None:
        self.ring = ring

    def create(self, session: Session, project_id: str, new: NewKey, value: bytes) -> KeyInfo:
        """Keep ``value`` as a new object of ``project_id``, sealed.

        :returns: the object, with its new UUID.
        :raises MasterKeyUnavailable: no master key to seal with.
        """
        key_uuid = str(uuid_lib.uuid4())
        # Sealed in the row's own transaction, so a master key rotation
        # waits for it (agent.keystore.keyset).
        sealed = envelope.seal(self.ring, KIND, key_uuid, value, session)
        row = models.ManagedKey(
            uuid=key_uuid, project_id=project_id, object_type=new.object_type,
            algorithm=new.algorithm, bit_length=new.bit_length, name=new.name,
            expiration=new.expiration, value=sealed.ciphertext,
            wrapped_key=sealed.wrapped_key, master_key_id=sealed.master_key_id,
            created_at=models.utcnow())
        session.add(row)
        session.flush()
        return _info(row)

    def get(self, session: Session, scope: Scope, key_uuid: str, *,
            with_value: bool) -> tuple[KeyInfo, bytes | None]:
        """Return a visible object and, when asked, its bytes.

        :raises ManagedKeyNotFound: no such object, or another project's.
        :raises Forbidden: another project's bytes, without the rule
            ``custos:read_other_project_values``.
        :raises DecryptionFailed: the stored bytes failed their integrity check.
        """
        row = self._visible(session, scope, key_uuid)
        if with_value and not scope.reads_value_of(row.project_id):
            raise exception.Forbidden(action=policy.READ_OTHER_VALUES)
        consumers = self._consumers(session, [row.id]).get(row.id, [])
        return _info(row, consumers), self._open(row) if with_value else None

    def list_keys(self, session: Session, scope: Scope, *, object_type: str | None,
                  with_value: bool) -> list[tuple[KeyInfo, bytes | None]]:
        """Return the visible objects, of one type when ``object_type`` is given.

        Ordered by creation, then UUID; two queries whatever the count.
        Bytes (``with_value``) come only with the caller's own project's
        objects.
        """
        query = sa.select(models.ManagedKey).order_by(models.ManagedKey.created_at,
                                                      models.ManagedKey.uuid)
        if not scope.all_projects:
            query = query.where(models.ManagedKey.project_id == scope.project_id)
        if object_type is not None:
            query = query.where(models.ManagedKey.object_type == object_type)
        rows = session.scalars(query).all()
        consumers = self._consumers(session, [row.id for row in rows])
        # Values of the caller's own project only: a list never carries
        # another project's bytes, whoever asks.
        return [(_info(row, consumers.get(row.id, [])),
                 self._open(row) if with_value and row.project_id == scope.project_id
                 else None) for row in rows]

    def delete(self, session: Session, scope: Scope, key_uuid: str, *, force: bool) -> KeyInfo:
        """Delete a visible object with its data key (crypto-shredding) and consumers.

        :returns: the object as it was.
        :raises ManagedKeyNotFound: no such object, or another project's.
        :raises KeyHasConsumers: it has consumers and ``force`` is false.
        """
        row = self._visible(session, scope, key_uuid)
        consumers = self._consumers(session, [row.id]).get(row.id, [])
        if consumers and not force:
            raise exception.KeyHasConsumers(uuid=key_uuid, count=len(consumers))
        info = _info(row, consumers)
        session.execute(sa.delete(models.KeyConsumer).where(models.KeyConsumer.key_id == row.id))
        session.execute(sa.delete(models.ManagedKey).where(models.ManagedKey.id == row.id))
        return info

    def add_consumer(self, session: Session, scope: Scope, key_uuid: str,
                     consumer: Consumer) -> KeyInfo:
        """Register a consumer of a visible object; registering it again changes nothing.

        :raises ManagedKeyNotFound: no such object, or another project's.
        """
        row = self._visible(session, scope, key_uuid)
        upsert.insert_if_absent(
            session, models.KeyConsumer, {"key_id": row.id, **consumer.as_dict()},
            key=("key_id", "service", "resource_type", "resource_id"))
        return _info(row)

    def remove_consumer(self, session: Session, scope: Scope, key_uuid: str,
                        consumer: Consumer) -> KeyInfo:
        """Remove a consumer of a visible object.

        :raises ManagedKeyNotFound: no such object, or another project's.
        :raises KeyConsumerNotFound: the consumer is not registered on it.
        """
        row = self._visible(session, scope, key_uuid)
        table = models.KeyConsumer
        result = session.execute(sa.delete(table).where(
            table.key_id == row.id, table.service == consumer.service,
            table.resource_type == consumer.resource_type,
            table.resource_id == consumer.resource_id))
        if upsert.rowcount(result) == 0:
            raise exception.KeyConsumerNotFound(uuid=key_uuid)
        return _info(row)

    # -- helpers --------------------------------------------------------------

    @staticmethod
    def _visible(session: Session, scope: Scope, key_uuid: str) -> models.ManagedKey:
        row = session.scalars(sa.select(models.ManagedKey)
                              .where(models.ManagedKey.uuid == key_uuid)).one_or_none()
        if row is None or not scope.sees(row.project_id):
            # The same answer for another project's object as for none at all.
            raise exception.ManagedKeyNotFound(uuid=key_uuid)
        return row

    @staticmethod
    def _consumers(session: Session,
                   key_ids: list[int]) -> dict[int, list[Consumer]]:
        found: dict[int, list[Consumer]] = {}
        if not key_ids:
            return found
        table = models.KeyConsumer
        rows = session.execute(
            sa.select(table.key_id, table.service, table.resource_type, table.resource_id)
            .where(table.key_id.in_(key_ids))
            .order_by(table.id)).all()
        for key_id, service, resource_type, resource_id in rows:
            found.setdefault(key_id, []).append(Consumer(service, resource_type, resource_id))
        return found

    def _open(self, row: models.ManagedKey) -> bytes:
        return envelope.open_sealed(self.ring, KIND, row.uuid, envelope.Sealed(
            ciphertext=row.value, wrapped_key=row.wrapped_key,
            master_key_id=row.master_key_id))
