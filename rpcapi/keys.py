"""Client methods for managed keys, castellan's objects (SPEC §3.8, API 1.1).

Object bytes travel as base64 text on the wire; these methods take and
return ``bytes`` and do the encoding.  Every method here is new in API
1.1: with a version cap below it (an upgrade in progress), each one
raises :class:`agent.exception.RPCVersionCapped` before sending anything.
"""

from __future__ import annotations

import base64
from typing import Any

from rpcapi.base import BaseAPI

#: API version that brought the key methods.
KEYS_VERSION = "1.1"


def _decoded(found: dict[str, Any]) -> dict[str, Any]:
    value = found.get("value")
    return {**found, "value": None if value is None else base64.b64decode(value)}


class KeysAPI(BaseAPI):
    """Methods for managed keys: create, store, get, list, delete, consumers."""

    def _call_keys(self, ctxt: Any, method: str, **kwargs: Any) -> Any:
        return self._call(ctxt, method, version=KEYS_VERSION, **kwargs)

    def key_create(self, ctxt: Any, algorithm: str, bit_length: int,
                   name: str | None = None, expiration: str | None = None,
                   object_type: str = "symmetric") -> str:
        """Generate a symmetric key in the caller's project.

        :param algorithm: ``AES`` (128, 192, 256 or 512 bits for XTS) or an
            HMAC algorithm (``HMACSHA256``...), in any case.
        :param expiration: ISO 8601 date and time, kept as given.
        :returns: the key's UUID.
        :raises agent.exception.InvalidInput: an unknown algorithm or size.
        :raises agent.exception.Forbidden: a context without a project.
        """
        return self._call_keys(ctxt, "key_create", object_type=object_type,
                               algorithm=algorithm, bit_length=bit_length, name=name,
                               expiration=expiration)

    def key_create_pair(self, ctxt: Any, algorithm: str, bit_length: int,
                        name: str | None = None,
                        expiration: str | None = None) -> tuple[str, str]:
        """Generate an RSA key pair (2048, 3072 or 4096 bits) in the caller's project.

        :returns: ``(private_uuid, public_uuid)``.
        """
        private_uuid, public_uuid = self._call_keys(
            ctxt, "key_create_pair", algorithm=algorithm, bit_length=bit_length,
            name=name, expiration=expiration)
        return private_uuid, public_uuid

    def key_store(self, ctxt: Any, object_type: str, value: bytes,
                  algorithm: str | None = None, bit_length: int | None = None,
                  name: str | None = None, expiration: str | None = None) -> str:
        """Keep an object's bytes (at most 64 KiB), returned later byte for byte.

        :param object_type: ``symmetric``, ``public``, ``private``,
            ``certificate``, ``passphrase`` or ``opaque``.
        :returns: the object's UUID.
        """
        return self._call_keys(ctxt, "key_store", object_type=object_type,
                               value=base64.b64encode(value).decode("ascii"),
                               algorithm=algorithm, bit_length=bit_length, name=name,
                               expiration=expiration)

    def key_get(self, ctxt: Any, uuid: str, metadata_only: bool = False) -> dict[str, Any]:
        """Return an object of the caller's project.

        :returns: ``{uuid, object_type, algorithm, bit_length, name, created,
            expiration, value, consumers}``; ``value`` is bytes, or None with
            ``metadata_only``.
        :raises agent.exception.ManagedKeyNotFound: unknown, or another
            project's.
        """
        return _decoded(self._call_keys(ctxt, "key_get", uuid=uuid,
                                        metadata_only=metadata_only))

    def key_list(self, ctxt: Any, object_type: str | None = None,
                 metadata_only: bool = False) -> list[dict[str, Any]]:
        """List the caller's objects, of one type when ``object_type`` is given.

        :returns: a list of what :meth:`key_get` returns.
        """
        return [_decoded(found) for found in self._call_keys(
            ctxt, "key_list", object_type=object_type, metadata_only=metadata_only)]

    def key_delete(self, ctxt: Any, uuid: str, force: bool = False) -> None:
        """Delete an object and its data key.

        :raises agent.exception.ManagedKeyNotFound: unknown, or another
            project's.
        :raises agent.exception.KeyHasConsumers: it has consumers and
            ``force`` is false.
        """
        return self._call_keys(ctxt, "key_delete", uuid=uuid, force=force)

    def key_consumer_add(self, ctxt: Any, uuid: str, service: str, resource_type: str,
                         resource_id: str) -> None:
        """Record that a resource uses an object; recording it twice changes nothing."""
        return self._call_keys(ctxt, "key_consumer_add", uuid=uuid, service=service,
                               resource_type=resource_type, resource_id=resource_id)

    def key_consumer_remove(self, ctxt: Any, uuid: str, service: str, resource_type: str,
                            resource_id: str) -> None:
        """Forget that a resource uses an object.

        :raises agent.exception.KeyConsumerNotFound: it is not a consumer.
        """
        return self._call_keys(ctxt, "key_consumer_remove", uuid=uuid, service=service,
                               resource_type=resource_type, resource_id=resource_id)
