"""RPC endpoint: glance metadata and backup metadata (SPEC §3.3).

Notification payloads name volumes, backups, the project, the service
account, the signing key's id and the glance metadata *keys*.  Glance
metadata *values* never go into a notification or a log line: they may be
licence keys, and notifications reach every consumer of the bus.
"""

from __future__ import annotations

import os
from typing import Any

from agent import exception, policy, validation
from agent.backups import glance, metadata
from agent.backups.document import FORMAT_VERSION, MAX_DOCUMENT_BYTES
from agent.backups.store import BackupStore
from agent.dispatch import Endpoint, Request, rpc_method

_VOLUME_FIELDS = frozenset({"id", "base", "metadata"})
# Cinder's volume_metadata columns are 255 characters each.
_USER_METADATA_LENGTH = 255
# A character is at least one byte; parse() applies the exact byte limit.
_MAX_DOCUMENT_LENGTH = MAX_DOCUMENT_BYTES


def store_from_conf(conf: Any) -> BackupStore:
    """Return the backup store ``[backup]`` describes.

    :raises agent.exception.ConfigurationError: a bad account prefix.
    """
    root = conf.backup.store_path or os.path.join(conf.state_path, "backups")
    return BackupStore(root, conf.backup.service_account_prefix)


def _check_volume(value: Any) -> tuple[str, dict[str, Any], dict[str, str]]:
    volume = validation.record("volume", value, _VOLUME_FIELDS, required=["id"])
    volume_id = validation.uuid("volume.id", volume["id"])
    base = validation.mapping("volume.base", volume.get("base", {}), nullable=True) or {}
    user_metadata = validation.string_map(
        "volume.metadata", volume.get("metadata", {}), nullable=True,
        max_value=_USER_METADATA_LENGTH) or {}
    return volume_id, base, user_metadata


def _glance_owner(ctx: Any) -> tuple[str, bool]:
    """Return the project a caller's glance metadata reads and writes are
    held to, and whether it also reads the rows without a project (admin).

    :raises Forbidden: the context names no project; it owns nothing.
    """
    if not ctx.project_id:
        raise exception.Forbidden(action="glance metadata without a project")
    return ctx.project_id, policy.check(ctx, "context_is_admin")


class BackupEndpoint(Endpoint):
    """Glance metadata and backup metadata (SPEC §3.3)."""

    def __init__(self, runtime: Any) -> None:
        super().__init__(runtime)
        self.store = store_from_conf(runtime.conf)

    # -- glance metadata -----------------------------------------------------

    @rpc_method()
    def volume_glance_metadata_set(self, request: Request, volume_id: Any,
                                   metadata: Any) -> None:
        """Create or overwrite glance metadata keys of a volume.

        Keys not named stay as they are.  Needs both tokens (composite).

        :raises InvalidInput: a bad volume id or metadata (see
            :func:`agent.backups.glance.check_metadata`).
        """
        volume_id = validation.uuid("volume_id", volume_id)
        values = glance.check_metadata("metadata", metadata)
        project_id, _ = _glance_owner(request.context)
        glance.update(request.session, volume_id, values, project_id=project_id)
        request.notify("glance_metadata.set", {
            "volume_id": volume_id, "project_id": request.context.project_id,
            "keys": sorted(values), "operation": "set"})

    @rpc_method()
    def volume_glance_metadata_get(self, request: Request, volume_id: Any) -> dict[str, str]:
        """Return a volume's glance metadata (``{}`` when none)."""
        volume_id = validation.uuid("volume_id", volume_id)
        project_id, ownerless = _glance_owner(request.context)
        return glance.get(request.session, volume_id, project_id, ownerless=ownerless)

    @rpc_method()
    def volume_glance_metadata_copy(self, request: Request, src_volume_id: Any,
                                    dst_volume_id: Any) -> None:
        """Give the destination exactly the source's glance metadata."""
        src_volume_id = validation.uuid("src_volume_id", src_volume_id)
        dst_volume_id = validation.uuid("dst_volume_id", dst_volume_id)
        project_id, ownerless = _glance_owner(request.context)
        copied = glance.copy(request.session, src_volume_id, dst_volume_id,
                             project_id=project_id, ownerless=ownerless)
        request.notify("glance_metadata.set", {
            "volume_id": dst_volume_id, "source_volume_id": src_volume_id,
            "project_id": request.context.project_id, "keys": sorted(copied),
            "operation": "copy"})

    # -- backup metadata -----------------------------------------------------

    @rpc_method()
    def backup_metadata_export(self, request: Request, backup_id: Any, volume: Any) -> str:
        """Sign a backup's metadata, store it in the service account, return it.

        :returns: the document (JSON text).
        """
        backup_id = validation.uuid("backup_id", backup_id)
        volume_id, base, user_metadata = _check_volume(volume)
        exported = metadata.export(
            request.session, self.runtime.ring, self.store, request.context,
            backup_id=backup_id, volume_id=volume_id, base=base, metadata=user_metadata)
        request.notify("backup.metadata.export", {
            "backup_id": backup_id, "volume_id": volume_id,
            "project_id": exported.project_id, "account": exported.account,
            "key_id": exported.key_id, "glance_keys": exported.glance_keys,
            "version": FORMAT_VERSION})
        return exported.text

    @rpc_method()
    def backup_metadata_import(self, request: Request, backup_id: Any, volume_id: Any,
                               document: Any = None) -> dict[str, Any]:
        """Verify a backup's metadata and restore it onto ``volume_id``.

        :param document: the document the caller kept; None reads custos'
            own copy from the service account.
        :returns: ``{metadata, glance_metadata, bootable, glance_verified,
            base}``; ``base`` holds the volume fields a restore puts back.
        :raises BackupMetadataTampered: a failed check under ``[backup]
            tamper_policy = fail``; nothing was written.
        """
        backup_id = validation.uuid("backup_id", backup_id)
        volume_id = validation.uuid("volume_id", volume_id)
        text = validation.string("document", document, max_length=_MAX_DOCUMENT_LENGTH,
                                 nullable=True)
        conf = self.runtime.conf.backup
        restore = metadata.evaluate_import(
            request.session, self.runtime.ring, self.store, request.context,
            backup_id=backup_id, text=text,
            accept_unsigned=conf.accept_unsigned_glance_metadata)
        if restore.tampered:
            event = ("backup.metadata.tampered",
                     self._tampered_payload(restore, volume_id, conf.tamper_policy), "error")
            if conf.tamper_policy == "fail":
                # Nothing is written, so the event goes out now: the
                # refusal below rolls the transaction back.
                self.runtime.send_notifications(request.context, [event])
                raise exception.BackupMetadataTampered(backup_id=backup_id,
                                                       reason=restore.reason)
            request.notify(*event)
        metadata.apply_import(request.session, restore, volume_id, request.context)
        request.notify("backup.metadata.import", {
            "backup_id": backup_id, "volume_id": volume_id,
            "source_volume_id": restore.source_volume_id,
            "project_id": restore.project_id, "key_id": restore.key_id,
            "version": restore.version, "glance_verified": restore.glance_verified,
            "bootable": restore.bootable, "glance_keys": sorted(restore.glance),
            "metadata_keys": sorted(restore.metadata)})
        return {"metadata": restore.metadata, "glance_metadata": restore.glance,
                "bootable": restore.bootable, "glance_verified": restore.glance_verified,
                "base": restore.base}

    @staticmethod
    def _tampered_payload(restore: metadata.Restore, volume_id: str,
                          policy: str) -> dict[str, Any]:
        return {"backup_id": restore.backup_id, "volume_id": volume_id,
                "source_volume_id": restore.source_volume_id,
                "project_id": restore.project_id, "key_id": restore.key_id,
                "reason": restore.reason, "tamper_policy": policy}

    @rpc_method()
    def backup_metadata_get(self, request: Request, backup_id: Any) -> str:
        """Return a backup's stored document (JSON text), as stored."""
        backup_id = validation.uuid("backup_id", backup_id)
        return metadata.read(request.session, self.store, request.context, backup_id)

    @rpc_method()
    def backup_metadata_delete(self, request: Request, backup_id: Any) -> None:
        """Forget a backup's record and stored document; absent is fine."""
        backup_id = validation.uuid("backup_id", backup_id)
        removed = metadata.delete(request.session, self.store, request.context, backup_id)
        if removed is not None:
            request.notify("backup.metadata.delete", removed)
