"""The secret store: libvirt's virSecret rules over two homes.

Persistent secrets are rows of the ``secrets`` table; their values are
sealed by :mod:`agent.keystore.envelope` (kind ``secret``, the UUID as the
object id), so a value copied onto another row does not open and
``custos-manage keys rotate-master`` re-wraps their data keys.  Ephemeral
secrets live in an :class:`~agent.secrets.ephemeral.EphemeralSecretStore`
of this agent only.  :class:`SecretStore` puts both behind one set of
rules:

* one secret per (usage type, usage id) within a project, across both
  homes: the database's unique index decides between rows (a concurrent
  creator loses cleanly), and a usage being inserted is reserved in memory
  until its transaction ends, so an ephemeral definition in this agent
  cannot take it meanwhile; another project's usages never meet it and
  no message names anything of another project;
* redefining a UUID keeps its usage (another one is
  :class:`~agent.exception.SecretUsageConflict`), may change its
  description, make it private (never public again) and move it between
  the homes (``ephemeral`` changed) with its value;
* a secret is seen as the caller's :class:`agent.policy.Scope` decides:
  its own project's; the administrator's, all; another project gets
  :class:`~agent.exception.SecretNotFound`; the administrator reads
  across projects but defines or sets values in its own project only
  (:class:`~agent.exception.SecretOwnedElsewhere` elsewhere);
* a volume driver's secrets (``driver_namespace`` set) belong to no
  project: no RPC operation here returns, lists, finds or changes them,
  whoever asks; drivers reach them by usage through the ``driver_*``
  methods;
* undefining deletes the row with its wrapped data key;
* a row an event purged (``deleted_at`` set, :mod:`agent.events.purge`)
  is no secret at all here: no read, list, lookup or write finds it, and
  its usage is free for a new secret.

Every method works in the caller's session and leaves committing to it.
Values are returned only by :meth:`SecretStore.get_value` and, for the
agent's drivers, :meth:`SecretStore.driver_secret`; nothing here logs.
"""

from __future__ import annotations

import builtins
import dataclasses
import threading
import uuid as uuid_lib
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy import orm
from sqlalchemy.orm import Session

from agent import exception, policy, wire
from agent.keystore import envelope
from agent.keystore.masterkey import MasterKeyRing
from agent.policy import Scope
from agent.secrets import outcome, passphrase
from agent.secrets.definition import SecretDefinition
from agent.secrets.ephemeral import EphemeralSecret, EphemeralSecretStore
from db import api as db_api
from db import models

__all__ = ["KIND", "MAX_VALUE_BYTES", "Scope", "SecretInfo", "SecretStore"]

#: Envelope kind of secret values (part of their associated data).
KIND = "secret"
#: Largest value a secret holds, in bytes.
MAX_VALUE_BYTES = wire.MAX_SECRET_VALUE_BYTES

_UsageKey = tuple[str, str]
# A project's usage as reserved in memory: (project, usage type, usage id).
_ProjectUsage = tuple[str, str, str]

#: A secret as read: its ORM object, or a row of the table read with Core
#: (same attribute names), which reads that change nothing use.
SecretRecord = models.Secret | sa.Row[Any]

_TABLE = models.Secret.__table__
# Built once: a read only binds its parameters to a statement whose
# compiled form SQLAlchemy has cached.
_LIVE = _TABLE.c.deleted_at.is_(None)
_BY_UUID = sa.select(_TABLE).where(_TABLE.c.uuid == sa.bindparam("uuid"), _LIVE)
_BY_USAGE = sa.select(_TABLE).where(_TABLE.c.project_id == sa.bindparam("project_id"),
                                    _TABLE.c.usage_type == sa.bindparam("usage_type"),
                                    _TABLE.c.usage_id == sa.bindparam("usage_id"), _LIVE)


def driver_usage_condition(namespace: Any, usage_type: Any,
                           usage_id: Any) -> sa.ColumnElement[bool]:
    """The condition the live driver secret of one usage meets.

    For a read that fetches that secret beside other rows in one
    statement (:mod:`agent.connections.initiator_data`); its row then goes
    to :meth:`SecretStore.open_driver_secret`.

    :param namespace: the driver's namespace, a value or bind parameter;
        so are ``usage_type`` and ``usage_id``.
    """
    return sa.and_(_TABLE.c.driver_namespace == namespace, _TABLE.c.usage_type == usage_type,
                   _TABLE.c.usage_id == usage_id, _LIVE)


class DriverSecretRow(NamedTuple):
    """The columns of a driver secret that :meth:`SecretStore.open_driver_secret` reads."""

    uuid: str
    value: bytes | None
    wrapped_key: bytes | None
    master_key_id: str | None


#: Those columns, in :class:`DriverSecretRow`'s order.
DRIVER_SECRET_COLUMNS = tuple(_TABLE.c[name] for name in DriverSecretRow._fields)

_BY_DRIVER_USAGE = sa.select(_TABLE).where(driver_usage_condition(
    sa.bindparam("namespace"), sa.bindparam("usage_type"), sa.bindparam("usage_id")))


@dataclasses.dataclass(frozen=True)
class SecretInfo:
    """What is known of one secret, never its value.

    :param definition: the secret's definition, ``uuid`` set.
    :param project_id: the owning project.
    :param has_value: whether a value is set.
    :param generated: the value was generated by the agent.
    :param driver_namespace: set for a volume driver's own secret.
    """

    definition: SecretDefinition
    project_id: str | None
    has_value: bool
    generated: bool = False
    driver_namespace: str | None = None

    @property
    def uuid(self) -> str:
        assert self.definition.uuid is not None
        return self.definition.uuid

    @property
    def ephemeral(self) -> bool:
        return self.definition.ephemeral

    def summary(self) -> dict[str, Any]:
        """Return ``{uuid, usage_type, usage_id, ephemeral, private, description}``."""
        defn = self.definition
        return {"uuid": self.uuid, "usage_type": defn.usage_type, "usage_id": defn.usage_id,
                "ephemeral": defn.ephemeral, "private": defn.private,
                "description": defn.description}

    def payload(self) -> dict[str, Any]:
        """Return the notification payload naming this secret (no value)."""
        defn = self.definition
        return {"uuid": self.uuid, "usage_type": defn.usage_type, "usage_id": defn.usage_id,
                "project_id": self.project_id, "ephemeral": defn.ephemeral,
                "private": defn.private, "generated": self.generated}


def _info_of_row(row: SecretRecord) -> SecretInfo:
    return SecretInfo(
        definition=SecretDefinition(uuid=row.uuid, ephemeral=False, private=bool(row.private),
                                    description=row.description, usage_type=row.usage_type,
                                    usage_id=row.usage_id),
        project_id=row.project_id, has_value=row.value is not None,
        generated=bool(row.generated), driver_namespace=row.driver_namespace)


def _info_of_record(record: EphemeralSecret) -> SecretInfo:
    # The ephemeral store keeps "" for a secret without a project.
    return SecretInfo(definition=record.definition, project_id=record.project_id or None,
                      has_value=record.has_value)


#: Stands for an ephemeral secret's UUID in messages, which the agent logs.
EPHEMERAL = "(ephemeral)"


def _ephemeral_conflict(key: _UsageKey, holder: str) -> exception.SecretUsageConflict:
    return exception.EphemeralSecretUsageConflict(usage_type=key[0], usage_id=key[1],
                                                  holder=holder)


def _usage_key(defn: SecretDefinition) -> _UsageKey | None:
    if defn.usage_type is None or defn.usage_id is None:
        return None
    return (defn.usage_type, defn.usage_id)


def _project_usage(project_id: str | None, defn: SecretDefinition) -> _ProjectUsage | None:
    if project_id is None or defn.usage_type is None or defn.usage_id is None:
        return None
    return (project_id, defn.usage_type, defn.usage_id)


class SecretStore:
    """libvirt secrets of one agent: database rows plus ephemeral ones in memory.

    :param ring: the master key ring that wraps every value's data key.
    :param ephemeral: where ephemeral secrets live; a new, empty one by default.
    """

    def __init__(self, ring: MasterKeyRing, ephemeral: EphemeralSecretStore | None = None) -> None:
        self.ring = ring
        self.ephemeral = ephemeral if ephemeral is not None else EphemeralSecretStore()
        # Guards the usage check across the two homes: usages being inserted
        # (until their transaction ends) and ephemeral definitions.
        self._lock = threading.Lock()
        self._reserved: dict[_ProjectUsage, str] = {}
        # Ephemeral secrets whose value this agent generated: the ones a
        # volume's deletion takes with it (as the generated column does for rows).
        self._generated: set[str] = set()

    # -- in-process API for the agent's drivers ------------------------------
    #
    # A driver's secrets are keyed by (namespace, usage type, usage id) and
    # found by that key alone: a UUID a driver reads from anywhere else
    # (initiator data, a caller) is never how it reaches its secret.

    def create_driver_secret(self, session: Session, *, namespace: str, usage_type: str,
                             usage_id: str, value: bytes,
                             description: str | None = None) -> str:
        """Define a driver's private, generated secret holding ``value``.

        The insert runs in a SAVEPOINT, so the caller's transaction survives
        a conflict.

        :param namespace: the driver's initiator data namespace; the
            secret belongs to it and to no project.
        :returns: the new secret's UUID.
        :raises SecretUsageConflict: the namespace holds the usage already;
            the unique index decides, so of two concurrent creators one
            loses.
        """
        row = models.Secret(uuid=str(uuid_lib.uuid4()), project_id=None,
                            driver_namespace=namespace, usage_type=usage_type,
                            usage_id=usage_id, description=description, private=True,
                            generated=True)
        try:
            with session.begin_nested():
                session.add(row)
        except sa_exc.IntegrityError:
            held = self._driver_row(session, namespace, usage_type, usage_id)
            raise exception.SecretUsageConflict(
                usage_type=usage_type, usage_id=usage_id,
                holder=held.uuid if held is not None else row.uuid) from None
        self._seal_into(row, value)
        session.flush()
        return row.uuid

    def driver_secret(self, session: Session, *, namespace: str, usage_type: str,
                      usage_id: str) -> tuple[str, bytes] | None:
        """Return ``(uuid, value)`` of a driver's secret, or None when there is none.

        :raises DecryptionFailed: the stored value failed its integrity check.
        """
        return self.open_driver_secret(self._driver_row(session, namespace, usage_type, usage_id))

    def open_driver_secret(self, row: Any) -> tuple[str, bytes] | None:
        """Return ``(uuid, value)`` of a driver secret's row read elsewhere.

        :param row: the row, with the attributes of :data:`DRIVER_SECRET_COLUMNS`;
            None when there is none.
        :returns: None for no row or a row without a value.
        :raises DecryptionFailed: the stored value failed its integrity check.
        """
        if row is None or row.value is None:
            return None
        return row.uuid, self._open(row)

    def delete_driver_secret(self, session: Session, *, namespace: str, uuid: str) -> None:
        """Delete one of a driver's secrets, by the UUID it read; nothing if it is gone.

        Deleting by UUID rather than by usage never removes a secret that a
        concurrent request created after this one looked.
        """
        session.execute(sa.delete(models.Secret).where(
            models.Secret.driver_namespace == namespace, models.Secret.uuid == uuid))

    def forget_generated_ephemeral(self, usage_type: str, usage_id: str,
                                   project_id: str) -> int:
        """Undefine the ephemeral secrets this agent generated for a project's usage.

        Only this agent's memory changes; an ephemeral secret defined with
        the caller's own value stays, as a database row would, and so do
        other projects' secrets for the same usage.

        :param project_id: the project the deletion names.
        :returns: how many secrets were undefined.
        """
        doomed = [record.uuid for record in self.ephemeral.list()
                  if record.uuid in self._generated and record.project_id == project_id
                  and record.definition.usage_type == usage_type
                  and record.definition.usage_id == usage_id]
        for uuid in doomed:
            self._forget_ephemeral(uuid)
        return len(doomed)

    # -- the RPC operations ---------------------------------------------------

    def define(self, session: Session, scope: Scope,
               defn: SecretDefinition) -> tuple[SecretInfo, SecretInfo | None]:
        """Define a secret, or redefine the one with the same UUID.

        :param defn: the parsed definition; a UUID is generated when it has
            none. A new secret belongs to the caller's project.
        :returns: ``(the secret as defined, the secret as it was before or
            None)``.
        :raises SecretNotFound: (a member) the UUID is held outside the
            caller's project.
        :raises SecretOwnedElsewhere: (the administrator) the same.
        :raises SecretUsageConflict: the UUID exists with another usage, or
            another secret of the project holds the usage.
        :raises SecretPrivateChange: a private secret would become public.
        """
        if defn.uuid is None:
            defn = dataclasses.replace(defn, uuid=str(uuid_lib.uuid4()))
        uuid = defn.uuid
        assert uuid is not None
        if defn.ephemeral:
            return self._define_ephemeral(session, scope, defn)
        if uuid in self.ephemeral:
            return self._make_persistent(session, scope, defn)
        row = self._row(session, uuid)
        if row is None:
            row = self._insert(session, defn, scope.owner, generated=False)
            return _info_of_row(row), None
        self._check_writable(scope, row.project_id, row.driver_namespace, uuid)
        before = _info_of_row(row)
        self._check_redefinition(before.definition, defn)
        row.description = defn.description
        row.private = defn.private
        session.flush()
        return _info_of_row(row), before

    def describe(self, session: Session, scope: Scope, uuid: str) -> SecretInfo:
        """Return what is known of a visible secret.

        :raises SecretNotFound: no such secret, or not the caller's.
        """
        return self._visible(session, scope, uuid)[0]

    def _visible(self, session: Session, scope: Scope,
                 uuid: str) -> tuple[SecretInfo, SecretRecord | None]:
        """Return a visible secret and its row as read (None for an ephemeral one).

        :raises SecretNotFound: no such secret, not the caller's, or a driver's.
        """
        row = None
        info = self._ephemeral_info(uuid)
        if info is None:
            row = self._read(session, uuid)
            if row is None:
                raise exception.SecretNotFound(secret=uuid)
            info = _info_of_row(row)
        if info.driver_namespace is not None or not scope.sees(info.project_id):
            raise exception.SecretNotFound(secret=uuid)
        return info, row

    def set_value(self, session: Session, scope: Scope, uuid: str, value: bytes) -> SecretInfo:
        """Set or replace the value of a secret of the caller's project.

        The value is sealed under a fresh data key.

        :returns: the secret, now with a value.
        :raises SecretNotFound: no such secret; (a member) another owner's.
        :raises SecretOwnedElsewhere: (the administrator) another project's
            or a driver's; nothing changes.
        """
        info = self._ephemeral_info(uuid)
        row = None
        if info is None:
            row = self._row(session, uuid)
            if row is None:
                raise exception.SecretNotFound(secret=uuid)
            info = _info_of_row(row)
        self._check_writable(scope, info.project_id, info.driver_namespace, uuid)
        if row is None:
            self.ephemeral.set_value(uuid, value)
        else:
            self._seal_into(row, value)
            session.flush()
        return dataclasses.replace(info, has_value=True)

    def get_value(self, session: Session, scope: Scope, uuid: str) -> tuple[SecretInfo, bytes]:
        """Return a visible, non-private secret and its value.

        :raises SecretNotFound: no such secret, or not the caller's.
        :raises Forbidden: another project's secret, and the caller may not
            read other projects' values (``custos:read_other_project_values``).
        :raises SecretPrivate: the secret is private.
        :raises SecretNoValue: it has no value.
        """
        info, row = self._visible(session, scope, uuid)
        if not scope.reads_value_of(info.project_id):
            raise exception.Forbidden(action=policy.READ_OTHER_VALUES)
        if info.definition.private:
            raise exception.SecretPrivate(uuid=EPHEMERAL if info.ephemeral else uuid)
        if row is None:
            try:
                return info, self.ephemeral.get_value(uuid)
            except exception.SecretNoValue:
                raise exception.SecretNoValue(uuid=EPHEMERAL) from None
        # The row read for the visibility check holds the value: no second query.
        return info, self._open(row)

    def undefine(self, session: Session, scope: Scope, uuid: str) -> SecretInfo:
        """Delete a visible secret, its value and its data key.

        :returns: the secret as it was.
        :raises SecretNotFound: no such secret, or not the caller's.
        """
        info = self.describe(session, scope, uuid)
        if info.ephemeral:
            self._forget_ephemeral(uuid)
        else:
            session.execute(sa.delete(models.Secret).where(models.Secret.uuid == uuid))
        return info

    def list(self, session: Session, scope: Scope, *, ephemeral: bool | None = None,
             private: bool | None = None,
             usage_type: str | None = None) -> builtins.list[SecretInfo]:
        """Return the visible secrets matching every filter given, ordered by UUID.

        Drivers' secrets are never among them.

        :param ephemeral: only ephemeral (True) or persistent (False) ones.
        :param private: only private (True) or public (False) ones.
        :param usage_type: only those of this usage type.
        """
        found: builtins.list[SecretInfo] = []
        if ephemeral is not False:
            for record in self.ephemeral.list():
                defn = record.definition
                info = _info_of_record(record)
                if (scope.sees(info.project_id)
                        and (private is None or defn.private == private)
                        and (usage_type is None or defn.usage_type == usage_type)):
                    found.append(info)
        if ephemeral is not True:
            query = sa.select(models.Secret).where(models.Secret.driver_namespace.is_(None),
                                                   models.Secret.deleted_at.is_(None))
            if not scope.all_projects:
                query = query.where(models.Secret.project_id == scope.project_id)
            if private is not None:
                query = query.where(models.Secret.private == private)
            if usage_type is not None:
                query = query.where(models.Secret.usage_type == usage_type)
            found.extend(_info_of_row(row) for row in session.scalars(query))
        return sorted(found, key=lambda info: info.uuid)

    def lookup_by_usage(self, session: Session, scope: Scope, usage_type: str,
                        usage_id: str, project_id: str | None = None) -> SecretInfo:
        """Return the secret of one project holding a usage (an index lookup).

        :param project_id: the project to search; the caller's own when
            None. Only the administrator may name another.
        :raises SecretNotFound: no secret of that project holds it, or the
            caller may not search there.
        """
        target = scope.owner if project_id is None else project_id
        if not scope.sees(target):
            raise exception.SecretNotFound(secret="with usage %s '%s'" % (usage_type, usage_id))
        holder = self.ephemeral.usage_holder(target, usage_type, usage_id)
        info: SecretInfo | None = None
        if holder is not None:
            info = self._ephemeral_info(holder)
        else:
            row = self._row_for_usage(session, target, usage_type, usage_id)
            info = None if row is None else _info_of_row(row)
        if info is None:
            raise exception.SecretNotFound(secret="with usage %s '%s'" % (usage_type, usage_id))
        return info

    def generate(self, session: Session, scope: Scope, *, usage_type: str, usage_id: str,
                 length: int, private: bool, ephemeral: bool) -> SecretInfo:
        """Define a new secret of the caller's project holding a random passphrase.

        :param length: the passphrase's length in characters.
        :returns: the new secret.
        :raises SecretUsageConflict: another secret of the project holds the usage.
        """
        defn = SecretDefinition(uuid=str(uuid_lib.uuid4()), ephemeral=ephemeral,
                                private=private, usage_type=usage_type, usage_id=usage_id)
        value = passphrase.generate(length)
        if ephemeral:
            info, _ = self._define_ephemeral(session, scope, defn, value)
            self._generated.add(info.uuid)
            return info
        row = self._insert(session, defn, scope.owner, generated=True)
        self._seal_into(row, value)
        session.flush()
        return _info_of_row(row)

    # -- helpers -------------------------------------------------------------

    @staticmethod
    def _check_writable(scope: Scope, owner: str | None, driver_namespace: str | None,
                        uuid: str) -> None:
        if driver_namespace is not None or not scope.writes(owner):
            raise scope.refuse_write(uuid)

    @staticmethod
    def _row(session: Session, uuid: str) -> models.Secret | None:
        return session.scalars(sa.select(models.Secret)
                               .where(models.Secret.uuid == uuid,
                                      models.Secret.deleted_at.is_(None))).one_or_none()

    @staticmethod
    def _read(session: Session, uuid: str) -> sa.Row[Any] | None:
        """Read a secret's row with Core: no ORM object."""
        return db_api.execute(session, _BY_UUID, {"uuid": uuid}).one_or_none()

    @staticmethod
    def _row_for_usage(session: Session, project_id: str, usage_type: str,
                       usage_id: str) -> sa.Row[Any] | None:
        return db_api.execute(session, _BY_USAGE, {
            "project_id": project_id, "usage_type": usage_type,
            "usage_id": usage_id}).one_or_none()

    @staticmethod
    def _driver_row(session: Session, namespace: str, usage_type: str,
                    usage_id: str) -> sa.Row[Any] | None:
        return db_api.execute(session, _BY_DRIVER_USAGE, {
            "namespace": namespace, "usage_type": usage_type,
            "usage_id": usage_id}).one_or_none()

    @staticmethod
    def _check_redefinition(old: SecretDefinition, new: SecretDefinition, *,
                            ephemeral: bool = False) -> None:
        """Refuse a redefinition that changes the usage or makes a secret public.

        :param ephemeral: ``old`` is an ephemeral secret, kept out of messages.
        """
        assert old.uuid is not None
        if _usage_key(old) != _usage_key(new):
            shown = old if old.usage_type is not None else new
            error = (exception.EphemeralSecretUsageConflict if ephemeral
                     else exception.SecretUsageConflict)
            raise error(usage_type=shown.usage_type, usage_id=shown.usage_id, holder=old.uuid)
        if old.private and not new.private:
            raise exception.SecretPrivateChange(uuid=EPHEMERAL if ephemeral else old.uuid)

    def _seal_into(self, row: models.Secret, value: bytes) -> None:
        # Sealed in the row's own transaction, so a master key rotation
        # waits for it (agent.keystore.keyset).
        sealed = envelope.seal(self.ring, KIND, row.uuid, bytes(value),
                               orm.object_session(row))
        row.value = sealed.ciphertext
        row.wrapped_key = sealed.wrapped_key
        row.master_key_id = sealed.master_key_id

    def _open(self, row: SecretRecord) -> bytes:
        if row.value is None or row.wrapped_key is None or row.master_key_id is None:
            raise exception.SecretNoValue(uuid=row.uuid)
        return envelope.open_sealed(self.ring, KIND, row.uuid, envelope.Sealed(
            row.value, row.wrapped_key, row.master_key_id))

    def _reserve(self, session: Session, key: _ProjectUsage, uuid: str) -> None:
        """Hold a project's usage in this agent until the session's transaction ends.

        :raises SecretUsageConflict: an ephemeral secret or another
            request of this agent holds it.
        """
        with self._lock:
            holder = self.ephemeral.usage_holder(*key)
            if holder is not None and holder != uuid:
                raise _ephemeral_conflict(key[1:], holder)
            holder = self._reserved.get(key)
            if holder is not None and holder != uuid:
                raise exception.SecretUsageConflict(usage_type=key[1], usage_id=key[2],
                                                    holder=holder)
            self._reserved[key] = uuid

        def release() -> None:
            with self._lock:
                if self._reserved.get(key) == uuid:
                    del self._reserved[key]

        outcome.on_end(session, release)

    def _insert(self, session: Session, defn: SecretDefinition, project_id: str | None,
                *, generated: bool) -> models.Secret:
        """Insert a project's row for ``defn`` in a SAVEPOINT; the unique indexes decide."""
        assert defn.uuid is not None
        key = _project_usage(project_id, defn)
        if key is not None:
            self._reserve(session, key, defn.uuid)
        row = models.Secret(uuid=defn.uuid, project_id=project_id, usage_type=defn.usage_type,
                            usage_id=defn.usage_id, description=defn.description,
                            private=defn.private, generated=generated)
        try:
            with session.begin_nested():
                session.add(row)
        except sa_exc.IntegrityError:
            holder = None
            if key is not None:
                held = self._row_for_usage(session, *key)
                holder = held.uuid if held is not None else None
            # Without a holder in the project the conflict is with a
            # definition of the same UUID or usage that has not committed
            # yet; the message names only what the caller sent.
            raise exception.SecretUsageConflict(
                usage_type=defn.usage_type, usage_id=defn.usage_id,
                holder=holder or defn.uuid) from None
        return row

    def _define_ephemeral(self, session: Session, scope: Scope, defn: SecretDefinition,
                          value: bytes | None = None) -> tuple[SecretInfo, SecretInfo | None]:
        uuid = defn.uuid
        assert uuid is not None
        with self._lock:
            before = self._ephemeral_info(uuid)
            if before is not None:
                self._check_writable(scope, before.project_id, None, uuid)
                self._check_redefinition(before.definition, defn, ephemeral=True)
                record = self.ephemeral.define(defn, before.project_id or "")
                return _info_of_record(record), before
            row = self._row(session, uuid)
            if row is not None:
                return self._make_ephemeral(session, scope, defn, row)
            key = _project_usage(scope.owner, defn)
            if key is not None:
                # The usage is read first so that SQLite's read snapshot
                # starts after any insert of it that ended while we waited
                # for the lock.
                holder = self._reserved.get(key)
                row_holder = self._row_for_usage(session, *key)
                holder = holder or (row_holder.uuid if row_holder is not None else None)
                if holder is not None and holder != uuid:
                    raise exception.SecretUsageConflict(usage_type=key[1], usage_id=key[2],
                                                        holder=holder)
                ephemeral_holder = self.ephemeral.usage_holder(*key)
                if ephemeral_holder is not None:
                    raise _ephemeral_conflict(key[1:], ephemeral_holder)
            record = self.ephemeral.define(defn, scope.owner, value)
            return _info_of_record(record), None

    def _make_ephemeral(self, session: Session, scope: Scope, defn: SecretDefinition,
                        row: models.Secret) -> tuple[SecretInfo, SecretInfo | None]:
        """Move a persistent secret into memory, value included (lock held)."""
        uuid = row.uuid
        self._check_writable(scope, row.project_id, row.driver_namespace, uuid)
        before = _info_of_row(row)
        self._check_redefinition(before.definition, defn)
        value = self._open(row) if before.has_value else None
        session.delete(row)
        session.flush()
        record = self.ephemeral.define(defn, row.project_id or "", value)
        outcome.on_rollback(session, lambda: self._forget_ephemeral(uuid))
        return dataclasses.replace(_info_of_record(record), has_value=value is not None), before

    def _make_persistent(self, session: Session, scope: Scope,
                         defn: SecretDefinition) -> tuple[SecretInfo, SecretInfo | None]:
        """Move an ephemeral secret into the database, value included."""
        uuid = defn.uuid
        assert uuid is not None
        record = self.ephemeral.get(uuid)
        before = _info_of_record(record)
        self._check_writable(scope, before.project_id, None, uuid)
        self._check_redefinition(record.definition, defn, ephemeral=True)
        value = self.ephemeral.get_value(uuid) if record.has_value else None
        row = self._insert(session, defn, before.project_id, generated=False)
        if value is not None:
            self._seal_into(row, value)
        session.flush()
        self.ephemeral.undefine(uuid)
        self._generated.discard(uuid)

        def restore() -> None:
            self.ephemeral.define(record.definition, record.project_id, value, bounded=False)

        outcome.on_rollback(session, restore)
        return _info_of_row(row), before

    def _ephemeral_info(self, uuid: str) -> SecretInfo | None:
        try:
            return _info_of_record(self.ephemeral.get(uuid))
        except exception.SecretNotFound:
            return None

    def _forget_ephemeral(self, uuid: str) -> None:
        self._generated.discard(uuid)
        try:
            self.ephemeral.undefine(uuid)
        except exception.SecretNotFound:
            pass
