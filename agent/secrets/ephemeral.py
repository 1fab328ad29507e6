"""Ephemeral secrets: held in this agent's memory and nowhere else.

A secret defined with ``ephemeral='yes'`` never reaches the database, a
log line or a notification payload; it lives in an
:class:`EphemeralSecretStore` and is gone when the agent stops.  Callers
that use one address a single agent (``server=`` its host).

The store applies the same redefinition rules as the database-backed
secrets:

* defining an existing UUID with the same usage replaces its definition
  (description, ephemeral, private no -> yes) and keeps its value;
* defining it with a different usage raises
  :class:`~agent.exception.SecretUsageConflict`;
* ``private`` cannot go from yes to no
  (:class:`~agent.exception.SecretPrivateChange`);
* one secret per (usage type, usage id) within a project: a second UUID
  of that project claiming a held usage raises
  :class:`~agent.exception.SecretUsageConflict` naming the holder; other
  projects' usages never meet it.

Lookups by UUID and by usage are dictionary lookups.  Every operation
holds one lock, so concurrent RPC handler threads see each change whole.

Visibility is the caller's business: the store keeps each secret's
``project_id`` on its record and keys usages by it, but does not filter
lookups by UUID.  Values never
leave through a record: :meth:`EphemeralSecretStore.get_value` is the only
way to read one, and nothing here logs.
"""

from __future__ import annotations

import builtins
import dataclasses
import threading
import uuid as uuid_lib

from agent import exception
from agent.secrets.definition import SecretDefinition

__all__ = ["EphemeralSecret", "EphemeralSecretStore"]

_UsageKey = tuple[str, str, str]


@dataclasses.dataclass(frozen=True)
class EphemeralSecret:
    """A snapshot of one ephemeral secret, without its value.

    :param definition: the secret's definition; its ``uuid`` is set.
    :param project_id: the project that owns the secret.
    :param has_value: whether a value has been set.
    """

    definition: SecretDefinition
    project_id: str
    has_value: bool = False

    @property
    def uuid(self) -> str:
        """The secret's UUID."""
        assert self.definition.uuid is not None
        return self.definition.uuid


class EphemeralSecretStore:
    """A thread-safe, in-memory home for ephemeral secrets."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_uuid: dict[str, EphemeralSecret] = {}
        self._by_usage: dict[_UsageKey, str] = {}
        # bytearrays, so that a replaced or undefined value can be
        # overwritten in place rather than left for the garbage collector.
        self._values: dict[str, bytearray] = {}

    def define(self, defn: SecretDefinition, project_id: str) -> EphemeralSecret:
        """Define a secret, or redefine the one with the same UUID.

        :param defn: the definition; a UUID is generated when it has none.
        :param project_id: the owning project, stored on the record.
        :returns: the record as stored.
        :raises agent.exception.SecretUsageConflict: the UUID exists with
            another usage (the exception names that UUID and the usage it
            holds), or another secret holds this usage (the exception names
            that holder).
        :raises agent.exception.SecretPrivateChange: the UUID exists as a
            private secret and ``defn`` is not private.
        """
        if defn.uuid is None:
            defn = dataclasses.replace(defn, uuid=str(uuid_lib.uuid4()))
        secret_uuid = defn.uuid
        assert secret_uuid is not None
        key = _usage_key(defn, project_id)
        with self._lock:
            existing = self._by_uuid.get(secret_uuid)
            if existing is not None:
                old = existing.definition
                # A redefinition keeps the secret's owner, whatever is passed.
                project_id = existing.project_id
                key = _usage_key(defn, project_id)
                if _usage_key(old, project_id) != key:
                    shown = old if old.usage_type is not None else defn
                    raise exception.SecretUsageConflict(
                        usage_type=shown.usage_type, usage_id=shown.usage_id,
                        holder=secret_uuid)
                if old.private and not defn.private:
                    raise exception.SecretPrivateChange(uuid=secret_uuid)
            elif key is not None and key in self._by_usage:
                raise exception.SecretUsageConflict(
                    usage_type=defn.usage_type, usage_id=defn.usage_id,
                    holder=self._by_usage[key])
            record = EphemeralSecret(definition=defn, project_id=project_id,
                                     has_value=secret_uuid in self._values)
            self._by_uuid[secret_uuid] = record
            if key is not None:
                self._by_usage[key] = secret_uuid
            return record

    def get(self, uuid: str) -> EphemeralSecret:
        """Return the record of a secret.

        :param uuid: the secret's UUID (lowercase canonical form).
        :raises agent.exception.SecretNotFound: no such secret here.
        """
        with self._lock:
            return self._get_locked(uuid)

    def lookup_by_usage(self, project_id: str, usage_type: str,
                        usage_id: str) -> EphemeralSecret:
        """Return the record of the project's secret holding a usage.

        :raises agent.exception.SecretNotFound: no secret of it here holds it.
        """
        with self._lock:
            holder = self._by_usage.get((project_id, usage_type, usage_id))
            if holder is None:
                raise exception.SecretNotFound(secret="%s '%s'" % (usage_type, usage_id))
            return self._by_uuid[holder]

    def usage_holder(self, project_id: str, usage_type: str, usage_id: str) -> str | None:
        """Return the UUID of the project's secret holding a usage, or None."""
        with self._lock:
            return self._by_usage.get((project_id, usage_type, usage_id))

    def set_value(self, uuid: str, value: bytes) -> None:
        """Set or replace a secret's value.

        :param value: the value; the store keeps its own copy.
        :raises agent.exception.SecretNotFound: no such secret here.
        :raises TypeError: ``value`` is not bytes.
        """
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError("a secret value must be bytes, not %s" % type(value).__name__)
        with self._lock:
            record = self._get_locked(uuid)
            _wipe(self._values.get(uuid))
            self._values[uuid] = bytearray(value)
            if not record.has_value:
                self._by_uuid[uuid] = dataclasses.replace(record, has_value=True)

    def get_value(self, uuid: str) -> bytes:
        """Return a secret's value.

        Private secrets are not refused here; that check belongs to the RPC
        handler, since the agent's own drivers read private values.

        :raises agent.exception.SecretNotFound: no such secret here.
        :raises agent.exception.SecretNoValue: no value has been set.
        """
        with self._lock:
            self._get_locked(uuid)
            value = self._values.get(uuid)
            if value is None:
                raise exception.SecretNoValue(uuid=uuid)
            return bytes(value)

    def undefine(self, uuid: str) -> EphemeralSecret:
        """Forget a secret and overwrite its value.

        :returns: the record as it was.
        :raises agent.exception.SecretNotFound: no such secret here.
        """
        with self._lock:
            record = self._get_locked(uuid)
            del self._by_uuid[uuid]
            key = _usage_key(record.definition, record.project_id)
            if key is not None:
                del self._by_usage[key]
            _wipe(self._values.pop(uuid, None))
            return record

    def list(self) -> builtins.list[EphemeralSecret]:
        """Return every record, ordered by UUID."""
        with self._lock:
            return sorted(self._by_uuid.values(), key=lambda record: record.uuid)

    def __contains__(self, uuid: object) -> bool:
        with self._lock:
            return uuid in self._by_uuid

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_uuid)

    def _get_locked(self, uuid: str) -> EphemeralSecret:
        record = self._by_uuid.get(uuid)
        if record is None:
            raise exception.SecretNotFound(secret=uuid)
        return record


def _usage_key(defn: SecretDefinition, project_id: str) -> _UsageKey | None:
    if defn.usage_type is None or defn.usage_id is None:
        return None
    return (project_id, defn.usage_type, defn.usage_id)


def _wipe(value: bytearray | None) -> None:
    if value is not None:
        value[:] = bytes(len(value))
