"""What the soak's callers send: every RPC method, in the lifecycles services run.

Each :class:`Caller` is one thread playing cinder-volume, nova-api, a
castellan user and a monitoring probe in turn. It repeats lifecycles that
end where they began (an attach is detached, a secret undefined, a key
deleted), so the agents' tables and lists stay the size of the work in
flight, as in a cloud in steady state. Volumes and instances it is done
with go to :class:`Deletions`, from which the soak announces them deleted
as Nova and Cinder would; when that is full the caller cleans up itself.

Every call is timed into a :class:`Recorder` with how it ended: ``ok``,
``expected:<code>`` (an ``agent.exception`` error the lifecycle asks
for, such as reading a secret it undefined), ``timeout``,
``typed:<code>`` (any other ``agent.exception`` error) or
``untyped:<class>`` (anything else, such as oslo.messaging's
``RemoteError``). A value the agent acknowledged is read back at once,
and a sample of acknowledged writes that are never deleted is kept in a
:class:`Ledger` to be read back when the run ends.
"""

from __future__ import annotations

import collections
import os
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import oslo_messaging as messaging

from agent import exception
from agent.context import RequestContext
from rpcapi import CustosAPI
from tests import services

#: The project the callers work in is the one Nova's and Cinder's events
#: name (tests/services.py builds their payloads).
PROJECT = services.PROJECT
#: The project of the ledger's writes, which no lifecycle deletes: its
#: secrets and keys stay out of the lists the callers time.
LEDGER_PROJECT = "3c1d7e9a5b2f4c6d8e0a1b3c5d7e9f1a"
BACKEND = "lvm-1"
#: Secret and key value sizes, from a CHAP-like passphrase to a certificate bundle.
VALUE_SIZES = (16, 32, 256, 1024, 4096, 16 * 1024, 48 * 1024)
#: Compute hosts the attaches come from: their CHAP credentials are made once.
INITIATORS = tuple(f"iqn.1993-08.org.debian:01:soak-{n:02d}" for n in range(16))


def context(roles: list[str], service_roles: list[str],
            project_id: str = PROJECT) -> RequestContext:
    """A request context as a calling service builds it."""
    return RequestContext(project_id=project_id, user_id="soak-user", roles=roles,
                          service_roles=service_roles, overwrite=False)


MEMBER = context(["member"], [])
ADMIN = context(["admin"], [])
SERVICE = context([], ["service"])
COMPOSITE = context(["member"], ["service"])
NOBODY = context([], [])
LEDGER_MEMBER = context(["member"], [], LEDGER_PROJECT)
LEDGER_COMPOSITE = context(["member"], ["service"], LEDGER_PROJECT)


class Mismatch(Exception):
    """A value read back differs from the one the agent acknowledged."""


class Aborted(Exception):
    """A call of the lifecycle failed; the rest of it is skipped."""


@dataclass
class Call:
    """One timed call: seconds since the run began, duration, method and outcome."""

    at: float
    seconds: float
    method: str
    outcome: str


class Recorder:
    """Every call of the run and every read-back, shared by the callers."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.calls: list[Call] = []
        self.read_backs = 0
        self.mismatches: list[str] = []
        self._lock = threading.Lock()

    def record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def read_back(self, what: str, matched: bool) -> None:
        """Count one acknowledged write read back; keep what did not match."""
        with self._lock:
            self.read_backs += 1
            if not matched:
                self.mismatches.append(what)

    def count(self) -> int:
        """Calls recorded so far."""
        with self._lock:
            return len(self.calls)


@dataclass
class Ledger:
    """Acknowledged writes kept to the end of the run, at most ``capacity``."""

    capacity: int = 500
    secrets: dict[str, bytes] = field(default_factory=dict)
    keys: dict[str, bytes] = field(default_factory=dict)
    glance: dict[str, dict[str, str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def full(self) -> bool:
        with self._lock:
            return len(self.secrets) + len(self.keys) + len(self.glance) >= self.capacity

    def keep(self, kind: str, name: str, value: Any) -> None:
        with self._lock:
            getattr(self, kind)[name] = value

    def size(self) -> int:
        return len(self.secrets) + len(self.keys) + len(self.glance)


class Deletions:
    """Volumes and instances the callers are done with, for the events to announce.

    Bounded: when it is full, :meth:`offer` refuses, and the caller
    deletes what it made itself.
    """

    def __init__(self, capacity: int = 200) -> None:
        self.volumes: collections.deque[str] = collections.deque()
        self.instances: collections.deque[str] = collections.deque()
        self.capacity = capacity
        self._lock = threading.Lock()

    def offer(self, kind: str, resource: str) -> bool:
        """Queue ``resource`` (``volumes`` or ``instances``); False when full."""
        with self._lock:
            queue: collections.deque[str] = getattr(self, kind)
            if len(queue) >= self.capacity:
                return False
            queue.append(resource)
            return True

    def take(self, kind: str, most: int) -> list[str]:
        """Take up to ``most`` resources of ``kind``, oldest first."""
        with self._lock:
            queue: collections.deque[str] = getattr(self, kind)
            return [queue.popleft() for _ in range(min(most, len(queue)))]


class Pacer:
    """Spaces one thread's calls so that all callers together keep ``rate`` per second."""

    def __init__(self, rate: float, callers: int) -> None:
        self.interval = callers / rate if rate > 0 else 0.0
        self.next_at = time.monotonic()

    def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        # A caller that fell behind (a slow call) does not burst to catch up
        # by more than a second's worth of calls.
        self.next_at = max(self.next_at + self.interval, now - 1.0)
        if self.next_at > now:
            time.sleep(self.next_at - now)


def _outcome(error: BaseException) -> str:
    if isinstance(error, messaging.MessagingTimeout):
        return "timeout"
    if isinstance(error, exception.CustosException):
        return f"typed:{error.code}"
    return f"untyped:{type(error).__name__}"


class Caller:
    """One calling thread's lifecycles (see the module docstring).

    :param api: the client, on the soak's transport.
    :param recorder: where every call and read-back is counted.
    :param ledger: where kept writes go.
    :param deletions: where finished volumes and instances go.
    :param pacer: spaces the calls.
    :param seed: this caller's random seed, so a run can be repeated.
    """

    def __init__(self, api: CustosAPI, recorder: Recorder, ledger: Ledger,
                 deletions: Deletions, pacer: Pacer, seed: int) -> None:
        self.api = api
        self.recorder = recorder
        self.ledger = ledger
        self.deletions = deletions
        self.pacer = pacer
        self.random = random.Random(seed)
        self.namespace = f"soak-{seed}"
        # (lifecycle, weight): the weights give every method a share of at
        # least a few percent of the calls.
        self.lifecycles: list[tuple[Callable[[], None], int]] = [
            (self.attach, 30), (self.encrypted_volume, 20), (self.libvirt_secret, 20),
            (self.boot_instance, 15), (self.castellan_key, 12), (self.stored_object, 12),
            (self.key_pair, 1), (self.initiator_data, 6), (self.probe, 4),
            (self.kept_write, 2)]

    # -- plumbing ------------------------------------------------------------

    def timed(self, method: str, operation: Callable[[], Any],
              expected: tuple[type[Exception], ...] = ()) -> Any:
        """Run one call after the pacer's wait and record it.

        :returns: its result, or the expected exception it raised.
        :raises Aborted: for any other failure (recorded first).
        """
        self.pacer.wait()
        started = time.monotonic()
        try:
            result = operation()
        except expected as error:
            self.recorder.record(Call(started - self.recorder.started,
                                      time.monotonic() - started, method,
                                      f"expected:{_outcome(error).split(':', 1)[1]}"))
            return error
        except Exception as error:  # noqa: BLE001 - recorded, the verdict judges it
            self.recorder.record(Call(started - self.recorder.started,
                                      time.monotonic() - started, method, _outcome(error)))
            raise Aborted(method) from None
        self.recorder.record(Call(started - self.recorder.started,
                                  time.monotonic() - started, method, "ok"))
        return result

    def check(self, what: str, matched: bool) -> None:
        self.recorder.read_back(what, matched)

    def value(self) -> bytes:
        return os.urandom(self.random.choice(VALUE_SIZES))

    def run(self, stop: threading.Event) -> None:
        """Repeat lifecycles until ``stop`` is set."""
        choices, weights = zip(*self.lifecycles)
        while not stop.is_set():
            lifecycle = self.random.choices(choices, weights)[0]
            try:
                lifecycle()
            except Aborted:
                continue

    # -- cinder-volume -------------------------------------------------------

    def attach(self) -> None:
        """Attach a volume to a compute host and detach it (CHAP credentials)."""
        volume = {"id": str(uuid.uuid4())}
        initiator = self.random.choice(INITIATORS)
        connector = {"initiator": initiator, "host": initiator.rsplit(":", 1)[1]}
        info = self.timed("initialize_connection", lambda: self.api.initialize_connection(
            SERVICE, volume, connector, backend=BACKEND))
        self.check("initialize_connection data", bool(info["data"].get("auth_password")))
        self.timed("terminate_connection", lambda: self.api.terminate_connection(
            SERVICE, volume, connector, backend=BACKEND))

    def initiator_data(self) -> None:
        """A driver's own data for an initiator: update, read back, remove."""
        initiator = self.random.choice(INITIATORS)
        values = {f"key-{n}": uuid.uuid4().hex * self.random.choice((1, 2, 7))
                  for n in range(self.random.choice((1, 3, 8)))}
        self.timed("initiator_data_update", lambda: self.api.initiator_data_update(
            COMPOSITE, initiator, self.namespace, set_values=values))
        found = self.timed("initiator_data_get", lambda: self.api.initiator_data_get(
            ADMIN, initiator, self.namespace))
        self.check("initiator_data_update", all(found.get(k) == v for k, v in values.items()))
        self.timed("initiator_data_update", lambda: self.api.initiator_data_update(
            COMPOSITE, initiator, self.namespace, remove_values=list(values)))

    def encrypted_volume(self) -> None:
        """A volume's key, its image's glance metadata, a clone, a backup and a restore."""
        volume, clone, restored = (str(uuid.uuid4()) for _ in range(3))
        secret = self.timed("secret_generate", lambda: self.api.secret_generate(
            MEMBER, "volume", volume, length=self.random.choice((32, 64))))
        found = self.timed("secret_lookup_by_usage", lambda: self.api.secret_lookup_by_usage(
            MEMBER, "volume", volume))
        self.check("secret_generate", found == secret)
        self.timed("secret_get_value", lambda: self.api.secret_get_value(MEMBER, secret))
        metadata = {"image_id": str(uuid.uuid4()), "image_name": "cirros-0.6.2",
                    "checksum": uuid.uuid4().hex, "min_disk": "1",
                    **{f"property_{n}": "x" * self.random.choice((8, 64, 255))
                       for n in range(self.random.choice((0, 4, 20)))}}
        self.timed("volume_glance_metadata_set", lambda: self.api.volume_glance_metadata_set(
            COMPOSITE, volume, metadata, wait=True))
        read = self.timed("volume_glance_metadata_get",
                          lambda: self.api.volume_glance_metadata_get(MEMBER, volume))
        self.check("volume_glance_metadata_set", read == metadata)
        if self.random.random() < 0.5:
            self.timed("volume_glance_metadata_copy",
                       lambda: self.api.volume_glance_metadata_copy(COMPOSITE, volume, clone))
            self.deletions.offer("volumes", clone)
        backup = str(uuid.uuid4())
        user_metadata = {f"k{n}": "v" * self.random.choice((4, 100)) for n in range(5)}
        document = self.timed("backup_metadata_export", lambda: self.api.backup_metadata_export(
            COMPOSITE, backup, {"id": volume, "base": {"display_name": "soak", "size": 1},
                                "metadata": user_metadata}))
        stored = self.timed("backup_metadata_get",
                            lambda: self.api.backup_metadata_get(COMPOSITE, backup))
        self.check("backup_metadata_export", stored == document)
        result = self.timed("backup_metadata_import", lambda: self.api.backup_metadata_import(
            COMPOSITE, backup, restored))
        self.check("backup_metadata_import",
                   result["glance_verified"] and result["metadata"] == user_metadata)
        self.timed("backup_metadata_delete",
                   lambda: self.api.backup_metadata_delete(COMPOSITE, backup))
        for gone in (volume, restored):
            if not self.deletions.offer("volumes", gone):
                # Nobody will announce it: undefine its key as Cinder's
                # key manager would (its glance metadata stays, as a
                # volume's does until it is deleted).
                if gone == volume:
                    self.timed("secret_undefine",
                               lambda: self.api.secret_undefine(MEMBER, secret))

    # -- nova ----------------------------------------------------------------

    def libvirt_secret(self) -> None:
        """A libvirt secret's whole life: define, set, read, describe, list, undefine."""
        name = f"client.soak-{uuid.uuid4().hex[:12]}"
        xml = (f"<secret ephemeral='no' private='no'><description>soak</description>"
               f"<usage type='ceph'><name>{name}</name></usage></secret>")
        secret = self.timed("secret_define_xml", lambda: self.api.secret_define_xml(MEMBER, xml))
        value = self.value()
        self.timed("secret_set_value", lambda: self.api.secret_set_value(MEMBER, secret, value))
        read = self.timed("secret_get_value", lambda: self.api.secret_get_value(MEMBER, secret))
        self.check("secret_set_value", read == value)
        described = self.timed("secret_get_xml_desc",
                               lambda: self.api.secret_get_xml_desc(MEMBER, secret))
        self.check("secret_define_xml", name in described)
        listed = self.timed("secret_list", lambda: self.api.secret_list(MEMBER, usage_type="ceph"))
        self.check("secret_list", any(item["uuid"] == secret for item in listed))
        self.timed("secret_undefine", lambda: self.api.secret_undefine(MEMBER, secret))
        # What a caller sees after the undefine, an expected typed error.
        gone = self.timed("secret_get_value", lambda: self.api.secret_get_value(MEMBER, secret),
                          expected=(exception.SecretNotFound,))
        self.check("secret_undefine", isinstance(gone, exception.SecretNotFound))

    def boot_instance(self) -> None:
        """nova-api at boot (roles cast) and the metadata service twice (cached)."""
        instance_uuid = str(uuid.uuid4())
        instance: dict[str, Any] = {"uuid": instance_uuid, "project_id": PROJECT,
                    "image_id": str(uuid.uuid4()), "hostname": "soak-vm", "user_data": None,
                    "metadata": {"tier": "web"}}
        self.timed("instance_boot_roles_set", lambda: self.api.instance_boot_roles_set(
            SERVICE, instance_uuid, ["member", "reader"]))
        for _ in range(2):
            self.timed("vendordata_get", lambda: self.api.vendordata_get(SERVICE, instance))
        self.deletions.offer("instances", instance_uuid)

    # -- castellan -----------------------------------------------------------

    def castellan_key(self) -> None:
        """A volume encryption key: create, get, consumers, delete."""
        key = self.timed("key_create", lambda: self.api.key_create(MEMBER, "AES", 256))
        found = self.timed("key_get", lambda: self.api.key_get(MEMBER, key))
        self.check("key_create", len(found["value"] or b"") == 32)
        resource = str(uuid.uuid4())
        self.timed("key_consumer_add", lambda: self.api.key_consumer_add(
            MEMBER, key, "cinder", "volume", resource))
        refused = self.timed("key_delete", lambda: self.api.key_delete(MEMBER, key),
                             expected=(exception.KeyHasConsumers,))
        self.check("key_consumer_add", isinstance(refused, exception.KeyHasConsumers))
        self.timed("key_consumer_remove", lambda: self.api.key_consumer_remove(
            MEMBER, key, "cinder", "volume", resource))
        self.timed("key_delete", lambda: self.api.key_delete(MEMBER, key))

    def stored_object(self) -> None:
        """A passphrase or opaque object stored, read back, listed and deleted."""
        object_type = self.random.choice(("passphrase", "opaque", "certificate"))
        value = self.value()
        key = self.timed("key_store", lambda: self.api.key_store(MEMBER, object_type, value))
        found = self.timed("key_get", lambda: self.api.key_get(MEMBER, key))
        self.check("key_store", found["value"] == value)
        listed = self.timed("key_list", lambda: self.api.key_list(
            MEMBER, object_type=object_type, metadata_only=True))
        self.check("key_list", any(item["uuid"] == key for item in listed))
        self.timed("key_delete", lambda: self.api.key_delete(MEMBER, key))

    def key_pair(self) -> None:
        """An RSA key pair (vTPM, image signing): create both halves, delete both."""
        private, public = self.timed("key_create_pair", lambda: self.api.key_create_pair(
            MEMBER, "RSA", 2048))
        for key in (private, public):
            self.timed("key_delete", lambda: self.api.key_delete(MEMBER, key))

    # -- monitoring and the ledger -------------------------------------------

    def probe(self) -> None:
        """What a monitoring check calls."""
        answer = self.timed("health", lambda: self.api.health(NOBODY))
        self.check("health", answer.get("database") == "ok")

    def kept_write(self) -> None:
        """A write in the ledger's project, read back when the run ends."""
        if self.ledger.full():
            return
        kind = self.random.choice(("secrets", "keys", "glance"))
        if kind == "secrets":
            value = self.value()
            secret = self.timed("secret_generate", lambda: self.api.secret_generate(
                LEDGER_MEMBER, "ceph", f"ledger-{uuid.uuid4().hex}"))
            self.timed("secret_set_value",
                       lambda: self.api.secret_set_value(LEDGER_MEMBER, secret, value))
            self.ledger.keep("secrets", secret, value)
        elif kind == "keys":
            value = self.value()
            key = self.timed("key_store", lambda: self.api.key_store(
                LEDGER_MEMBER, "opaque", value))
            self.ledger.keep("keys", key, value)
        else:
            volume = str(uuid.uuid4())
            metadata = {"image_id": str(uuid.uuid4()), "kept": "yes"}
            self.timed("volume_glance_metadata_set", lambda: self.api.volume_glance_metadata_set(
                LEDGER_COMPOSITE, volume, metadata, wait=True))
            self.ledger.keep("glance", volume, metadata)


def read_ledger(api: CustosAPI, ledger: Ledger) -> list[str]:
    """Read every kept write back; return a line for each one that is missing or differs."""
    lost: list[str] = []

    def read(what: str, operation: Callable[[], Any], expected: Any) -> None:
        try:
            found = operation()
        except Exception as error:  # noqa: BLE001 - reported as lost
            lost.append(f"{what}: {_outcome(error)}")
            return
        if found != expected:
            lost.append(f"{what}: differs")

    for secret, value in ledger.secrets.items():
        read(f"secret {secret}", lambda: api.secret_get_value(LEDGER_MEMBER, secret), value)
    for key, value in ledger.keys.items():
        read(f"key {key}", lambda: api.key_get(LEDGER_MEMBER, key)["value"], value)
    for volume, metadata in ledger.glance.items():
        read(f"glance metadata {volume}",
             lambda: api.volume_glance_metadata_get(LEDGER_MEMBER, volume), metadata)
    return lost

