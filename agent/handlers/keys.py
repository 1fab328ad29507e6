"""RPC endpoint: castellan's managed objects (SPEC §3.8, API 1.1).

Each method checks its arguments, works out the caller's scope (its own
project's objects; the administrator's: every project's) and hands over
to :class:`agent.keys.store.KeyStore`.  Object bytes travel as base64
text.  ``key.create`` and ``key.delete`` name the object, its type and
project, never its bytes.
"""

from __future__ import annotations

import base64
import datetime
import logging
from typing import Any

from agent import exception, transactions, validation
from agent.dispatch import Endpoint, Request, rpc_method
from agent.keys import kinds
from agent.keys.store import Consumer, KeyInfo, KeyStore, NewKey
from agent.policy import Scope

LOG = logging.getLogger(__name__)

MAX_BIT_LENGTH = 65536


def _scope(request: Request) -> Scope:
    # Keys belong to a project: without one there is nothing to own.
    return request.scope.require_project("keys without a project")


def _owner(request: Request) -> str:
    """The project a new object belongs to: the caller's, which it must have.

    An administrator without a project sees every key but owns none.
    """
    project_id = _scope(request).project_id
    if not project_id:
        raise exception.Forbidden(action="keys without a project")
    return project_id


def _expiration(value: Any) -> str | None:
    text = validation.string("expiration", value, 64, nullable=True)
    if text is None:
        return None
    try:
        datetime.datetime.fromisoformat(text)
    except ValueError:
        raise exception.InvalidInput(field="expiration",
                                     reason="is not an ISO 8601 date and time") from None
    return text


def _new_key(object_type: str, algorithm: Any, bit_length: Any, name: Any,
             expiration: Any) -> NewKey:
    bits = None if bit_length is None else validation.integer("bit_length", bit_length,
                                                              1, MAX_BIT_LENGTH)
    return NewKey(object_type=object_type,
                  algorithm=validation.string("algorithm", algorithm, nullable=True),
                  bit_length=bits,
                  name=validation.string("name", name, allow_empty=True, nullable=True),
                  expiration=_expiration(expiration))


def _consumer(service: Any, resource_type: Any, resource_id: Any) -> Consumer:
    return Consumer(service=validation.required_string("service", service),
                    resource_type=validation.required_string("resource_type", resource_type),
                    resource_id=validation.required_string("resource_id", resource_id))


def _reply(info: KeyInfo, value: bytes | None) -> dict[str, Any]:
    reply = info.describe(value)
    reply["value"] = None if value is None else base64.b64encode(value).decode("ascii")
    return reply


class KeyEndpoint(Endpoint):
    """castellan's key manager operations, added in API version 1.1."""

    @property
    def store(self) -> KeyStore:
        return self.runtime.keys

    @rpc_method(transactions.Remembered())
    def key_create(self, request: Request, object_type: Any, algorithm: Any, bit_length: Any,
                   name: Any = None, expiration: Any = None) -> str:
        """Generate a symmetric key (AES 128/192/256/512 or HMAC) for the caller's project.

        :returns: the new key's UUID.
        :raises InvalidInput: an object type other than ``symmetric``, an
            unknown algorithm or a size it does not have.
        :raises Forbidden: the context has no project.
        """
        validation.choice("object_type", object_type, [kinds.SYMMETRIC])
        new = _new_key(kinds.SYMMETRIC, validation.required_string("algorithm", algorithm),
                       validation.integer("bit_length", bit_length, 1, MAX_BIT_LENGTH),
                       name, expiration)
        assert new.algorithm is not None and new.bit_length is not None
        material = kinds.generate_symmetric(new.algorithm, new.bit_length)
        info = self.store.create(request.session, _owner(request), new, material)
        request.notify("key.create", info.payload())
        return info.uuid

    @rpc_method(transactions.Remembered())
    def key_create_pair(self, request: Request, algorithm: Any, bit_length: Any,
                        name: Any = None, expiration: Any = None) -> list[str]:
        """Generate an RSA key pair (2048, 3072 or 4096 bits) for the caller's project.

        :returns: ``[private_uuid, public_uuid]``.
        :raises InvalidInput: an algorithm other than RSA or another size.
        """
        algorithm = validation.required_string("algorithm", algorithm)
        bits = validation.integer("bit_length", bit_length, 1, MAX_BIT_LENGTH)
        owner = _owner(request)
        private_der, public_der = kinds.generate_pair(algorithm, bits)
        uuids = []
        for object_type, material in ((kinds.PRIVATE, private_der), (kinds.PUBLIC, public_der)):
            info = self.store.create(request.session, owner,
                                     _new_key(object_type, algorithm, bits, name, expiration),
                                     material)
            request.notify("key.create", info.payload())
            uuids.append(info.uuid)
        return uuids

    @rpc_method(transactions.Remembered())
    def key_store(self, request: Request, object_type: Any, value: Any, algorithm: Any = None,
                  bit_length: Any = None, name: Any = None, expiration: Any = None) -> str:
        """Keep an object's bytes (base64, at most 64 KiB decoded) byte for byte.

        :returns: the new object's UUID.
        :raises InvalidInput: an unknown object type, empty or bad base64,
            or a symmetric key whose ``bit_length`` is not its size.
        """
        object_type = validation.choice("object_type", object_type, kinds.OBJECT_TYPES)
        assert object_type is not None
        raw = validation.base64_bytes("value", value, kinds.MAX_VALUE_BYTES)
        if not raw:
            raise exception.InvalidInput(field="value", reason="must not be empty")
        new = _new_key(object_type, algorithm, bit_length, name, expiration)
        if (object_type == kinds.SYMMETRIC and new.bit_length is not None
                and new.bit_length != len(raw) * 8):
            raise exception.InvalidInput(field="bit_length",
                                         reason="is not the size of the key given")
        info = self.store.create(request.session, _owner(request), new, raw)
        request.notify("key.create", info.payload())
        return info.uuid

    @rpc_method()
    def key_get(self, request: Request, uuid: Any, metadata_only: Any = False) -> dict[str, Any]:
        """Return an object: its metadata, consumers and (unless ``metadata_only``) bytes.

        :returns: ``{uuid, object_type, algorithm, bit_length, name,
            created, expiration, value, consumers}``, ``value`` base64 or null.
        :raises ManagedKeyNotFound: no such object, or another project's.
        :raises Forbidden: another project's bytes, without the rule
            ``custos:read_other_project_values``; a read under it is logged
            and announced (``key.value_read``).
        """
        key_uuid = validation.uuid("uuid", uuid)
        metadata_only = validation.boolean("metadata_only", metadata_only)
        info, value = self.store.get(request.session, _scope(request), key_uuid,
                                     with_value=not metadata_only)
        if value is not None and info.project_id != request.context.project_id:
            LOG.info("Bytes of key %s of project %s read by user %s of %s", info.uuid,
                     info.project_id, request.context.user_id,
                     request.context.project_id or "no project")
            request.notify("key.value_read", {**info.payload(),
                                              "reader_user_id": request.context.user_id})
        return _reply(info, value)

    @rpc_method()
    def key_list(self, request: Request, object_type: Any = None,
                 metadata_only: Any = False) -> list[dict[str, Any]]:
        """List the caller's objects (the administrator's: all), of one type if given.

        :returns: a list of what :meth:`key_get` returns; bytes only for
            the caller's own project's objects.
        """
        object_type = validation.choice("object_type", object_type, kinds.OBJECT_TYPES,
                                        nullable=True)
        metadata_only = validation.boolean("metadata_only", metadata_only)
        found = self.store.list_keys(request.session, _scope(request), object_type=object_type,
                                with_value=not metadata_only)
        return [_reply(info, value) for info, value in found]

    @rpc_method(transactions.Remembered())
    def key_delete(self, request: Request, uuid: Any, force: Any = False) -> None:
        """Delete an object and its data key.

        :raises ManagedKeyNotFound: no such object, or another project's.
        :raises KeyHasConsumers: it has consumers and ``force`` is false.
        """
        key_uuid = validation.uuid("uuid", uuid)
        force = validation.boolean("force", force)
        assert force is not None
        info = self.store.delete(request.session, _scope(request), key_uuid, force=force)
        request.notify("key.delete", info.payload())

    @rpc_method()
    def key_consumer_add(self, request: Request, uuid: Any, service: Any, resource_type: Any,
                         resource_id: Any) -> None:
        """Record that a resource uses an object (again: no change).

        :raises ManagedKeyNotFound: no such object, or another project's.
        """
        key_uuid = validation.uuid("uuid", uuid)
        consumer = _consumer(service, resource_type, resource_id)
        self.store.add_consumer(request.session, _scope(request), key_uuid, consumer)

    @rpc_method(transactions.Remembered())
    def key_consumer_remove(self, request: Request, uuid: Any, service: Any,
                            resource_type: Any, resource_id: Any) -> None:
        """Forget that a resource uses an object.

        :raises ManagedKeyNotFound: no such object, or another project's.
        :raises KeyConsumerNotFound: the resource is not a consumer of it.
        """
        key_uuid = validation.uuid("uuid", uuid)
        consumer = _consumer(service, resource_type, resource_id)
        self.store.remove_consumer(request.session, _scope(request), key_uuid, consumer)
