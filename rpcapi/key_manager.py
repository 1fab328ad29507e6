"""custos as a castellan key manager backend (``[key_manager] backend = custos``).

Installed with ``pip install custos[castellan]``, which registers
:class:`CustosKeyManager` as ``custos`` in castellan's ``castellan.drivers``
entry point group.  A service that reaches its keys through castellan
(Cinder's volume encryption keys, Nova's vTPM and ephemeral-disk
passphrases, Glance's image signing certificates) then keeps them in
custos, over RPC, acting with the caller's own request context: each key
belongs to the project of the context it was stored with.

Construction is cheap and touches no network: castellan builds every
installed backend when it lists its options, and Cinder builds a key
manager per operation.  The RPC transport is built on first use, once per
process (per URL), from ``[custos] transport_url`` or, when that is unset,
the service's own ``transport_url``; the client names exchange ``custos``
in its own target, so the service's ``control_exchange`` and other
process-wide oslo.messaging defaults stay as they are.

Errors come back as castellan's: an unknown key (or another project's) is
``ManagedObjectNotFoundError``, a refusal (or a missing context) is
``Forbidden``, anything else is ``KeyManagerError``.  Messages name the
failure, never a key's bytes.
"""

from __future__ import annotations

import builtins
import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import oslo_messaging as messaging
from castellan.common import exception as castellan_exception
from castellan.common.credentials import keystone_password, keystone_token
from castellan.common.credentials import token as token_credential
from castellan.common.objects import key as castellan_key
from castellan.common.objects import managed_object
from castellan.common.objects import opaque_data, passphrase, private_key, public_key
from castellan.common.objects import symmetric_key, x_509
from castellan.key_manager import key_manager
from oslo_config import cfg
from oslo_context import context as oslo_context

from agent import exception, wire
from rpcapi.client import CustosAPI

GROUP = "custos"

OPTS = [
    cfg.StrOpt("transport_url", secret=True,
               help="The oslo.messaging transport URL of the RabbitMQ where custos-agent "
                    "serves. Unset: the service's own [DEFAULT] transport_url."),
    cfg.IntOpt("timeout", min=1,
               help="Seconds to wait for custos-agent's reply. Unset: the service's own "
                    "[DEFAULT] rpc_response_timeout."),
]

# castellan's managed_type() names and custos' object types are the same words.
_CLASSES: dict[str, type[managed_object.ManagedObject]] = {
    cls.managed_type(): cls for cls in (symmetric_key.SymmetricKey, public_key.PublicKey,
                                        private_key.PrivateKey, x_509.X509,
                                        passphrase.Passphrase, opaque_data.OpaqueData)}
_KEY_CLASSES = (symmetric_key.SymmetricKey, public_key.PublicKey, private_key.PrivateKey)
_CONSUMER_FIELDS = ("service", "resource_type", "resource_id")

_lock = threading.Lock()
_clients: dict[tuple[str | None, int | None], CustosAPI] = {}

F = TypeVar("F", bound=Callable[..., Any])


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Return the backend's options, for oslo-config-generator."""
    return [(GROUP, list(OPTS))]


def _client(conf: cfg.ConfigOpts) -> CustosAPI:
    """Return the process's client for the configured transport, built on first use."""
    url = conf[GROUP].transport_url
    timeout = conf[GROUP].timeout
    with _lock:
        api = _clients.get((url, timeout))
        if api is None:
            _register_messaging_opts(conf)
            transport = messaging.get_rpc_transport(
                conf, url=url, allowed_remote_exmods=wire.ALLOWED_EXMODS)
            api = CustosAPI(transport=transport, timeout=timeout)
            _clients[(url, timeout)] = api
        return api


def _register_messaging_opts(conf: cfg.ConfigOpts) -> None:
    """Register on ``conf`` what oslo.messaging reads but registers only on the global CONF.

    castellan may hand the backend a private ``ConfigOpts``; oslo.messaging
    registers its tracing options on ``cfg.CONF`` at import time and reads
    them from the configuration the client was built with.
    """
    if conf is cfg.CONF:
        return
    from oslo_messaging._tracing import client as tracing

    conf.register_opts(tracing.oslo_messaging_tracing, group="oslo_messaging_tracing")


def cleanup() -> None:
    """Close every transport the backend built in this process (at a service's exit)."""
    with _lock:
        clients = builtins.list(_clients.values())
        _clients.clear()
    for api in clients:
        api.client.transport.cleanup()


def _translated(func: F) -> F:
    """Turn custos and messaging failures into castellan's exceptions."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except castellan_exception.CastellanException:
            raise
        except exception.ManagedKeyNotFound as error:
            raise castellan_exception.ManagedObjectNotFoundError(
                uuid=error.kwargs.get("uuid")) from None
        except exception.Forbidden as error:
            raise castellan_exception.Forbidden(error.msg) from None
        except exception.CustosException as error:
            raise castellan_exception.KeyManagerError(reason=error.msg) from None
        except messaging.RemoteError as error:
            raise castellan_exception.KeyManagerError(
                reason=f"{error.exc_type} in custos-agent") from None
        except messaging.MessagingException as error:
            raise castellan_exception.KeyManagerError(
                reason=f"custos-agent unreachable: {type(error).__name__}") from None

    return wrapper  # type: ignore[return-value]


def _request_context(context: Any) -> wire.RequestContext:
    """Return what goes on the bus for the caller, or refuse before anything is sent.

    An oslo.context context passes its own tokens (and, for an agent that
    believes claims, its project, user and roles); castellan's
    ``KeystonePassword`` and ``KeystoneToken`` credentials become a token
    through keystoneauth1, and a plain ``Token`` is that token. Nothing
    else of the caller's (its auth plugin, its token's catalog) is sent.

    :raises castellan.common.exception.Forbidden: no context, a credential
        custos cannot turn into a token, or Keystone refused it.
    """
    if context is None:
        raise castellan_exception.Forbidden("custos needs the caller's request context")
    if isinstance(context, oslo_context.RequestContext):
        return wire.RequestContext(
            auth_token=context.auth_token, service_token=context.service_token,
            user_id=context.user_id, project_id=context.project_id,
            domain_id=context.domain_id, system_scope=context.system_scope,
            roles=list(context.roles or []),
            service_roles=list(getattr(context, "service_roles", None) or []),
            request_id=context.request_id, global_request_id=context.global_request_id,
            overwrite=False)
    if isinstance(context, (keystone_password.KeystonePassword, keystone_token.KeystoneToken)):
        return wire.RequestContext(auth_token=_keystone_token(context), overwrite=False)
    if isinstance(context, token_credential.Token):
        return wire.RequestContext(auth_token=context.token, overwrite=False)
    raise castellan_exception.Forbidden(
        "custos acts with a Keystone token: an oslo.context request context or a "
        f"castellan Keystone credential, not a {type(context).__name__}")


def _keystone_token(credential: Any) -> str:
    """Return a token for a castellan Keystone credential (one Keystone round trip)."""
    from keystoneauth1 import exceptions as ks_exceptions
    from keystoneauth1 import identity
    from keystoneauth1 import session as ks_session

    if not credential.auth_url:
        raise castellan_exception.Forbidden("the Keystone credential names no auth_url")
    scope = {name: getattr(credential, name) for name in (
        "trust_id", "domain_id", "domain_name", "project_id", "project_name",
        "project_domain_id", "project_domain_name")}
    auth: Any
    if isinstance(credential, keystone_password.KeystonePassword):
        auth = identity.Password(
            auth_url=credential.auth_url, username=credential.username,
            password=credential.password, user_id=credential.user_id,
            user_domain_id=credential.user_domain_id,
            user_domain_name=credential.user_domain_name, **scope)
    else:
        auth = identity.Token(auth_url=credential.auth_url, token=credential.token, **scope)
    try:
        return str(ks_session.Session(auth=auth).get_token())
    except ks_exceptions.Unauthorized:
        raise castellan_exception.Forbidden("Keystone refused the credential") from None
    except ks_exceptions.ClientException as error:
        raise castellan_exception.KeyManagerError(
            reason=f"Keystone unreachable: {type(error).__name__}") from None


def _managed_object(found: dict[str, Any]) -> managed_object.ManagedObject:
    """Build castellan's object from what ``key_get`` returns."""
    cls = _CLASSES.get(found["object_type"])
    if cls is None:
        raise castellan_exception.KeyManagerError(
            reason=f"unknown object type {found['object_type']!r}")
    common = {"name": found["name"], "created": found["created"], "id": found["uuid"],
              "consumers": found["consumers"]}
    if issubclass(cls, castellan_key.Key):
        return cls(found["algorithm"], found["bit_length"], found["value"],
                   **common)
    return cls(found["value"], **common)


def _consumer(consumer_data: Any) -> dict[str, str]:
    if not isinstance(consumer_data, dict) or set(consumer_data) != set(_CONSUMER_FIELDS):
        raise castellan_exception.KeyManagerError(
            reason="a consumer is a dict of service, resource_type and resource_id")
    return {name: consumer_data[name] for name in _CONSUMER_FIELDS}


class CustosKeyManager(key_manager.KeyManager):
    """castellan's ``KeyManager`` over custos-agent's ``key_*`` RPC methods (API 1.1).

    :param configuration: the service's configuration (castellan passes
        its ``CONF``); the ``[custos]`` options are registered on it.
    """

    def __init__(self, configuration: cfg.ConfigOpts | None) -> None:
        self.conf = configuration if configuration is not None else cfg.CONF
        self.conf.register_opts(OPTS, group=GROUP)

    @property
    def _api(self) -> CustosAPI:
        return _client(self.conf)

    @_translated
    def create_key(self, context: Any, algorithm: str, length: int,
                   expiration: str | None = None, name: str | None = None) -> str:
        """Generate a symmetric key (AES or HMAC) in the caller's project.

        :returns: the key's UUID.
        """
        ctxt = _request_context(context)
        return self._api.key_create(ctxt, algorithm, length, name=name, expiration=expiration)

    @_translated
    def create_key_pair(self, context: Any, algorithm: str, length: int,
                        expiration: str | None = None,
                        name: str | None = None) -> tuple[str, str]:
        """Generate an RSA key pair (2048, 3072 or 4096 bits).

        :returns: ``(private_uuid, public_uuid)``.
        """
        ctxt = _request_context(context)
        return self._api.key_create_pair(ctxt, algorithm, length, name=name,
                                         expiration=expiration)

    @_translated
    def store(self, context: Any, managed_object: managed_object.ManagedObject,
              expiration: str | None = None) -> str:
        """Keep any castellan object; :meth:`get` returns it byte for byte.

        :returns: the object's UUID.
        """
        ctxt = _request_context(context)
        value = managed_object.get_encoded()
        if value is None:
            raise castellan_exception.KeyManagerError(reason="the object has no value to store")
        algorithm = bit_length = None
        if isinstance(managed_object, _KEY_CLASSES):
            algorithm, bit_length = managed_object.algorithm, managed_object.bit_length
        return self._api.key_store(ctxt, managed_object.managed_type(), bytes(value),
                                   algorithm=algorithm, bit_length=bit_length,
                                   name=managed_object.name, expiration=expiration)

    @_translated
    def get(self, context: Any, managed_object_id: str,
            metadata_only: bool = False) -> managed_object.ManagedObject:
        """Return an object of the caller's project (without its bytes if ``metadata_only``).

        :raises ManagedObjectNotFoundError: unknown, or another project's.
        """
        ctxt = _request_context(context)
        return _managed_object(self._api.key_get(ctxt, managed_object_id,
                                                 metadata_only=metadata_only))

    @_translated
    def list(self, context: Any,
             object_type: type[managed_object.ManagedObject] | None = None,
             metadata_only: bool = False) -> builtins.list[managed_object.ManagedObject]:
        """List the caller's objects, only those of class ``object_type`` when given."""
        ctxt = _request_context(context)
        type_name = None
        if object_type is not None:
            if not (isinstance(object_type, type)
                    and issubclass(object_type, managed_object.ManagedObject)):
                raise castellan_exception.KeyManagerError(
                    reason="object_type must be a castellan managed object class")
            type_name = object_type.managed_type()
        found = self._api.key_list(ctxt, object_type=type_name, metadata_only=metadata_only)
        return [_managed_object(item) for item in found]

    @_translated
    def delete(self, context: Any, managed_object_id: str, force: bool = False) -> None:
        """Delete an object; one with consumers only with ``force``.

        :raises ManagedObjectNotFoundError: unknown, or another project's.
        :raises KeyManagerError: it has consumers and ``force`` is false.
        """
        ctxt = _request_context(context)
        self._api.key_delete(ctxt, managed_object_id, force=force)

    @_translated
    def add_consumer(self, context: Any, managed_object_id: str,
                     consumer_data: dict[str, str]) -> None:
        """Record that a resource uses an object (``service``, ``resource_type``, ``resource_id``)."""
        ctxt = _request_context(context)
        self._api.key_consumer_add(ctxt, managed_object_id, **_consumer(consumer_data))

    @_translated
    def remove_consumer(self, context: Any, managed_object_id: str,
                        consumer_data: dict[str, str]) -> None:
        """Forget that a resource uses an object.

        :raises ManagedObjectNotFoundError: the object or the consumer is unknown.
        """
        ctxt = _request_context(context)
        self._api.key_consumer_remove(ctxt, managed_object_id, **_consumer(consumer_data))

    def list_options_for_discovery(self) -> builtins.list[tuple[str | None,
                                                                builtins.list[cfg.Opt]]]:
        """Return ``[("custos", [transport_url, timeout])]``."""
        return [(GROUP, builtins.list(OPTS))]
