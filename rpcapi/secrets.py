"""Client methods for secrets (libvirt virSecret).

Values travel as base64 text on the wire; these methods take and return
``bytes`` and do the encoding.  Ephemeral secrets live in one agent's
memory: pass ``server=`` that agent's host for every call about them.
"""

from __future__ import annotations

import base64
from typing import Any

from rpcapi.base import BaseAPI


class SecretsAPI(BaseAPI):
    """Methods for secrets (libvirt virSecret)."""

    def secret_define_xml(self, ctxt: Any, xml: str, server: str | None = None) -> str:
        """Define a secret from libvirt ``<secret>`` XML, or redefine its UUID.

        :returns: the secret's UUID.
        :raises InvalidSecretXML: the document is refused.
        :raises SecretUsageConflict: the usage is another secret's, or the
            UUID exists with another usage.
        :raises SecretPrivateChange: a private secret would become public.
        """
        return self._call(ctxt, "secret_define_xml", server=server, xml=xml)

    def secret_get_xml_desc(self, ctxt: Any, uuid: str, server: str | None = None) -> str:
        """Return a secret's definition as libvirt XML (never its value).

        :raises SecretNotFound: unknown UUID, or another project's secret.
        """
        return self._call(ctxt, "secret_get_xml_desc", server=server, uuid=uuid)

    def secret_set_value(self, ctxt: Any, uuid: str, value: bytes,
                         server: str | None = None) -> None:
        """Set a secret's value (at most 64 KiB).

        :raises SecretNotFound: unknown UUID, or another project's secret.
        """
        return self._call(ctxt, "secret_set_value", server=server, uuid=uuid,
                          value=base64.b64encode(value).decode("ascii"))

    def secret_get_value(self, ctxt: Any, uuid: str, server: str | None = None) -> bytes:
        """Return a secret's value.

        :raises SecretNotFound: unknown UUID, or another project's secret.
        :raises SecretPrivate: the secret is private.
        :raises SecretNoValue: no value was set.
        """
        encoded = self._call(ctxt, "secret_get_value", server=server, uuid=uuid)
        return base64.b64decode(encoded)

    def secret_undefine(self, ctxt: Any, uuid: str, server: str | None = None) -> None:
        """Delete a secret, its value and its data key.

        :raises SecretNotFound: unknown UUID, or another project's secret.
        """
        return self._call(ctxt, "secret_undefine", server=server, uuid=uuid)

    def secret_list(self, ctxt: Any, ephemeral: bool | None = None, private: bool | None = None,
                    usage_type: str | None = None,
                    server: str | None = None) -> list[dict[str, Any]]:
        """List the caller's secrets (an administrator's: every project's).

        :param ephemeral: only ephemeral (True) or persistent (False) ones;
            None for both.
        :param private: only private (True) or public (False) ones.
        :param usage_type: only secrets of this usage type.
        :returns: ``[{uuid, usage_type, usage_id, ephemeral, private,
            description}]`` ordered by UUID.
        """
        return self._call(ctxt, "secret_list", server=server, ephemeral=ephemeral,
                          private=private, usage_type=usage_type)

    def secret_lookup_by_usage(self, ctxt: Any, usage_type: str, usage_id: str,
                               project_id: str | None = None,
                               server: str | None = None) -> str:
        """Return the UUID of the secret holding (usage_type, usage_id).

        :param project_id: (API 1.1, administrators) search this project
            instead of the caller's; None searches the caller's.
        :raises SecretNotFound: no secret of the searched project holds it.
        :raises RPCVersionCapped: ``project_id`` given while the version
            cap is 1.0 (nothing is sent).
        """
        if project_id is None:
            return self._call(ctxt, "secret_lookup_by_usage", server=server,
                              usage_type=usage_type, usage_id=usage_id)
        return self._call(ctxt, "secret_lookup_by_usage", version="1.1", server=server,
                          usage_type=usage_type, usage_id=usage_id, project_id=project_id)

    def secret_generate(self, ctxt: Any, usage_type: str, usage_id: str, length: int = 32,
                        private: bool = False, ephemeral: bool = False,
                        server: str | None = None) -> str:
        """Define a secret holding a random passphrase of ``length`` (16-1024) characters.

        For usage type ``volume``, ``usage_id`` is an absolute path or a volume id.

        :returns: the new secret's UUID.
        :raises SecretUsageConflict: another secret holds the usage.
        """
        return self._call(ctxt, "secret_generate", server=server, usage_type=usage_type,
                          usage_id=usage_id, length=length, private=private,
                          ephemeral=ephemeral)
