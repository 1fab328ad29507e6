"""RPC endpoint: secrets with libvirt's virSecret semantics (SPEC §3.2).

Each method checks its arguments, works out which secrets the caller sees
(its own project's; the administrator's every project's) and hands over to
:class:`agent.secrets.store.SecretStore`.

Notifications name the persistent store's changes only: ``secret.define``,
``secret.undefine`` and ``secret.value_change``, with the secret's UUID,
usage, project and flags, never a value.  Nothing at all is sent about an
ephemeral secret, whose existence stays within the agent's memory; a
persistent secret redefined as ephemeral leaves the database, which is
announced as its ``secret.undefine``.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from agent import exception, transactions, validation
from agent.dispatch import Endpoint, Request, rpc_method
from agent.policy import Scope
from agent.secrets import definition, passphrase
from agent.secrets.store import MAX_VALUE_BYTES, SecretInfo, SecretStore

LOG = logging.getLogger(__name__)


def _scope(request: Request) -> Scope:
    # Secrets belong to a project: without one there is nothing to own, for
    # the administrator too.
    return request.scope.require_project("secrets without a project")


def _usage(usage_type: Any, usage_id: Any) -> tuple[str, str]:
    usage_type = validation.choice("usage_type", usage_type, sorted(definition.USAGE_TYPES))
    usage_id = validation.required_string("usage_id", usage_id, definition.MAX_USAGE_ID_CHARS)
    assert usage_type is not None
    return usage_type, usage_id


def _notify(request: Request, event_type: str, info: SecretInfo) -> None:
    if not info.ephemeral:
        request.notify(event_type, info.payload())


class SecretEndpoint(Endpoint):
    """libvirt secrets: define, describe, value, undefine, list, lookup, generate.

    Works on the agent's :class:`SecretStore` (``runtime.secrets``), the
    one its volume drivers use too.
    """

    @property
    def store(self) -> SecretStore:
        return self.runtime.secrets

    @rpc_method(transactions.Remembered())
    def secret_define_xml(self, request: Request, xml: Any) -> str:
        """Define a secret from libvirt XML, or redefine the one with its UUID.

        :returns: the secret's UUID (generated when the XML has none).
        :raises InvalidSecretXML: the document is refused (field ``xml``).
        :raises SecretUsageConflict, SecretPrivateChange, SecretNotFound.
        :raises SecretOwnedElsewhere: the administrator named a UUID that
            another project holds; nothing changed.
        """
        defn = definition.parse(xml)
        info, before = self.store.define(request.session, _scope(request), defn)
        if before is not None and not before.ephemeral and info.ephemeral:
            request.notify("secret.undefine", before.payload())
        _notify(request, "secret.define", info)
        return info.uuid

    @rpc_method(transactions.READ_ONLY, quick=True)
    def secret_get_xml_desc(self, request: Request, uuid: Any) -> str:
        """Return a secret's definition as libvirt XML, never its value.

        :raises SecretNotFound: no such secret, or another project's.
        """
        info = self.store.describe(request.session, _scope(request),
                                   validation.uuid("uuid", uuid))
        return definition.format(info.definition)

    @rpc_method()
    def secret_set_value(self, request: Request, uuid: Any, value: Any) -> None:
        """Set a secret's value, given as base64 of at most 64 KiB once decoded.

        :raises SecretNotFound: no such secret, or another project's.
        :raises SecretOwnedElsewhere: the administrator named another
            project's secret; nothing changed.
        """
        secret_uuid = validation.uuid("uuid", uuid)
        # libvirt refuses an empty secret value too.
        raw = validation.base64_bytes("value", value, MAX_VALUE_BYTES, allow_empty=False)
        info = self.store.set_value(request.session, _scope(request), secret_uuid, raw)
        _notify(request, "secret.value_change", info)

    @rpc_method(transactions.READ_ONLY, quick=True)
    def secret_get_value(self, request: Request, uuid: Any) -> str:
        """Return a secret's value as base64.

        :raises SecretNotFound: no such secret, or another project's.
        :raises Forbidden: another project's secret, without the rule
            ``custos:read_other_project_values``; a read under it is logged
            and announced (``secret.value_read``).
        :raises SecretPrivate: the secret is private.
        :raises SecretNoValue: no value was set.
        """
        info, value = self.store.get_value(request.session, _scope(request),
                                           validation.uuid("uuid", uuid))
        if info.project_id != request.context.project_id:
            LOG.info("Value of secret %s of project %s read by user %s of %s",
                     info.uuid, info.project_id, request.context.user_id,
                     request.context.project_id or "no project")
            request.notify("secret.value_read", {**info.payload(),
                                                 "reader_user_id": request.context.user_id})
        return base64.b64encode(value).decode("ascii")

    @rpc_method(transactions.Remembered())
    def secret_undefine(self, request: Request, uuid: Any) -> None:
        """Delete a secret with its value and data key.

        :raises SecretNotFound: no such secret, or another project's.
        """
        info = self.store.undefine(request.session, _scope(request),
                                   validation.uuid("uuid", uuid))
        _notify(request, "secret.undefine", info)

    @rpc_method(transactions.READ_ONLY)
    def secret_list(self, request: Request, ephemeral: Any = None, private: Any = None,
                    usage_type: Any = None) -> list[dict[str, Any]]:
        """List the caller's secrets (the administrator's: all), filtered.

        :returns: ``[{uuid, usage_type, usage_id, ephemeral, private,
            description}]`` ordered by UUID; a filter left None matches all.
        """
        found = self.store.list(
            request.session, _scope(request),
            ephemeral=validation.boolean("ephemeral", ephemeral, nullable=True),
            private=validation.boolean("private", private, nullable=True),
            usage_type=validation.choice("usage_type", usage_type,
                                         sorted(definition.USAGE_TYPES), nullable=True))
        return [info.summary() for info in found]

    @rpc_method(transactions.READ_ONLY, quick=True)
    def secret_lookup_by_usage(self, request: Request, usage_type: Any, usage_id: Any,
                               project_id: Any = None) -> str:
        """Return the UUID of the secret of a project holding a usage.

        :param project_id: (API 1.1) the project to search, the caller's
            own by default; another project's needs the administrator.
        :raises SecretNotFound: no secret of the project holds it.
        :raises Forbidden: a member named another project.
        """
        usage_type, usage_id = _usage(usage_type, usage_id)
        project_id = validation.string("project_id", project_id, nullable=True)
        scope = _scope(request)
        if project_id is not None and not scope.may_act_on(project_id):
            raise exception.Forbidden(action="custos:secret_lookup_by_usage")
        return self.store.lookup_by_usage(request.session, scope, usage_type, usage_id,
                                          project_id=project_id).uuid

    @rpc_method(transactions.Remembered())
    def secret_generate(self, request: Request, usage_type: Any, usage_id: Any,
                        length: Any = passphrase.DEFAULT_LENGTH, private: Any = False,
                        ephemeral: Any = False) -> str:
        """Define a secret holding a random passphrase of ``length`` characters.

        For usage type ``volume`` the usage id is an absolute path or, as
        Nova names an encrypted volume's secret, the volume id; a volume id
        is stored in lowercase so that ``volume.delete.end`` finds it.

        :returns: the new secret's UUID.
        :raises SecretUsageConflict: another secret holds the usage.
        """
        usage_type, usage_id = _usage(usage_type, usage_id)
        if usage_type == "volume" and not usage_id.startswith("/"):
            usage_id = validation.uuid("usage_id", usage_id)
        length = validation.integer("length", length, passphrase.MIN_LENGTH,
                                    passphrase.MAX_LENGTH)
        private = validation.boolean("private", private)
        ephemeral = validation.boolean("ephemeral", ephemeral)
        assert private is not None and ephemeral is not None
        info = self.store.generate(request.session, _scope(request), usage_type=usage_type,
                                   usage_id=usage_id, length=length, private=private,
                                   ephemeral=ephemeral)
        _notify(request, "secret.define", info)
        _notify(request, "secret.value_change", info)
        return info.uuid
