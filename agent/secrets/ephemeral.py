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

The store is bounded, so a greedy caller cannot grow the agent without
limit: each project holds at most ``max_per_project`` secrets, the values
and definitions of all projects together take at most ``max_bytes``
(counted as the bytes the caller supplied, a fair stand-in for the
memory they cost), and those of one project at most
``max_bytes_per_project``, so that one project cannot take all the room
and leave none to the others.  A define or set that would pass any limit
raises :class:`~agent.exception.QuotaExceeded` and changes nothing;
undefining gives the room back at once.

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

from oslo_config import cfg

from agent import exception
from agent.conf import secrets as secrets_conf
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
    """A thread-safe, bounded, in-memory home for ephemeral secrets.

    :param max_per_project: most secrets one project may hold; None for
        no limit.
    :param max_bytes: most bytes of values and definitions held for all
        projects together; None for no limit.
    :param max_bytes_per_project: most bytes of values and definitions
        held for one project; None for no limit.
    """

    def __init__(self, max_per_project: int | None = None,
                 max_bytes: int | None = None,
                 max_bytes_per_project: int | None = None) -> None:
        self.max_per_project = max_per_project
        self.max_bytes = max_bytes
        self.max_bytes_per_project = max_bytes_per_project
        self._lock = threading.Lock()
        self._per_project: dict[str, int] = {}
        self._bytes = 0
        self._bytes_per_project: dict[str, int] = {}
        self._by_uuid: dict[str, EphemeralSecret] = {}
        self._by_usage: dict[_UsageKey, str] = {}
        # bytearrays, so that a replaced or undefined value can be
        # overwritten in place rather than left for the garbage collector.
        self._values: dict[str, bytearray] = {}

    @classmethod
    def from_conf(cls, conf: cfg.ConfigOpts) -> EphemeralSecretStore:
        """Build a store bounded by ``[secrets]`` options.

        ``max_ephemeral_per_project`` and ``max_ephemeral_bytes`` as they
        are; ``max_ephemeral_bytes_per_project``, when unset, is
        ``max_ephemeral_bytes`` divided by
        :data:`agent.conf.secrets.PROJECT_SHARE_DIVISOR`.
        """
        options = conf.secrets
        per_project = options.max_ephemeral_bytes_per_project
        if per_project is None:
            per_project = options.max_ephemeral_bytes // secrets_conf.PROJECT_SHARE_DIVISOR
        return cls(max_per_project=options.max_ephemeral_per_project,
                   max_bytes=options.max_ephemeral_bytes, max_bytes_per_project=per_project)

    @property
    def used_bytes(self) -> int:
        """Bytes of values and definitions held now."""
        with self._lock:
            return self._bytes

    def define(self, defn: SecretDefinition, project_id: str,
               value: bytes | None = None, *, bounded: bool = True) -> EphemeralSecret:
        """Define a secret, or redefine the one with the same UUID.

        :param defn: the definition; a UUID is generated when it has none.
        :param project_id: the owning project, stored on the record.
        :param value: a value to set with the definition, in the same step
            (both or neither are stored).
        :param bounded: False only to put back what this store held a
            moment ago (undoing a rolled-back move), which must not fail.
        :returns: the record as stored.
        :raises agent.exception.QuotaExceeded: the project would hold more
            than ``max_per_project`` secrets or ``max_bytes_per_project``
            bytes, or the store more than ``max_bytes``.
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
            if value is not None:
                value = bytes(_checked_value(value))
            old_size = _definition_size(existing.definition) if existing else 0
            old_value = self._values.get(secret_uuid)
            growth = _definition_size(defn) - old_size
            if value is not None:
                growth += len(value) - (len(old_value) if old_value is not None else 0)
            if bounded:
                joins = existing is None or existing.project_id != project_id
                self._check_room(project_id, joins, growth)
            if existing is not None:
                self._count(existing.project_id, -1)
            self._count(project_id, +1)
            self._add_bytes(project_id, growth)
            if value is not None:
                _wipe(old_value)
                self._values[secret_uuid] = bytearray(value)
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
        :raises agent.exception.QuotaExceeded: the store would hold more
            than ``max_bytes``, or the secret's project more than
            ``max_bytes_per_project``; the old value stays.
        :raises TypeError: ``value`` is not bytes.
        """
        value = bytes(_checked_value(value))
        with self._lock:
            record = self._get_locked(uuid)
            old = self._values.get(uuid)
            growth = len(value) - (len(old) if old is not None else 0)
            self._check_room(record.project_id, False, growth)
            self._add_bytes(record.project_id, growth)
            _wipe(old)
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
            value = self._values.pop(uuid, None)
            freed = _definition_size(record.definition) + (len(value) if value is not None else 0)
            self._add_bytes(record.project_id, -freed)
            _wipe(value)
            self._count(record.project_id, -1)
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

    def _check_room(self, project_id: str, joins: bool, growth: int) -> None:
        """Refuse a change past a limit (lock held).

        :param project_id: the project whose secret changes.
        :param joins: whether the project gains a secret.
        :param growth: bytes the change adds (negative when it frees some).
        """
        if (joins and self.max_per_project is not None
                and self._per_project.get(project_id, 0) >= self.max_per_project):
            raise exception.QuotaExceeded(limit="max_ephemeral_per_project",
                                          allowed=self.max_per_project)
        if growth <= 0:
            return
        if (self.max_bytes_per_project is not None and
                self._bytes_per_project.get(project_id, 0) + growth > self.max_bytes_per_project):
            raise exception.QuotaExceeded(limit="max_ephemeral_bytes_per_project",
                                          allowed=self.max_bytes_per_project)
        if self.max_bytes is not None and self._bytes + growth > self.max_bytes:
            raise exception.QuotaExceeded(limit="max_ephemeral_bytes",
                                          allowed=self.max_bytes)

    def _add_bytes(self, project_id: str, change: int) -> None:
        self._bytes += change
        held = self._bytes_per_project.get(project_id, 0) + change
        if held > 0:
            self._bytes_per_project[project_id] = held
        else:
            self._bytes_per_project.pop(project_id, None)

    def _count(self, project_id: str, change: int) -> None:
        held = self._per_project.get(project_id, 0) + change
        if held > 0:
            self._per_project[project_id] = held
        else:
            self._per_project.pop(project_id, None)

    def _get_locked(self, uuid: str) -> EphemeralSecret:
        record = self._by_uuid.get(uuid)
        if record is None:
            raise exception.SecretNotFound(secret=uuid)
        return record


def _usage_key(defn: SecretDefinition, project_id: str) -> _UsageKey | None:
    if defn.usage_type is None or defn.usage_id is None:
        return None
    return (project_id, defn.usage_type, defn.usage_id)


def _checked_value(value: object) -> bytes | bytearray | memoryview:
    # memoryview's len() counts items, not bytes; callers copy to bytes.
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError("a secret value must be bytes, not %s" % type(value).__name__)
    return value


def _definition_size(defn: SecretDefinition) -> int:
    # What the caller chose the length of; the fixed overhead of a record
    # is bounded by the per-project count.
    return sum(len(text.encode()) for text in (defn.uuid, defn.description, defn.usage_type,
                                               defn.usage_id) if text)


def _wipe(value: bytearray | None) -> None:
    if value is not None:
        value[:] = bytes(len(value))
