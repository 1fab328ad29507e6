"""RPC endpoint: glance metadata and backup metadata (SPEC §3.3).

Notification payloads name volumes, backups, the project, the service
account, the signing key's id and the glance metadata *keys*.  Glance
metadata *values* never go into a notification or a log line: they may be
licence keys, and notifications reach every consumer of the bus.
"""

from __future__ import annotations

from typing import Any

from agent import exception, transactions, validation
from agent.backups import glance, metadata
from agent.backups.document import MAX_DOCUMENT_BYTES
from agent.backups.store import BackupStore
from agent.dispatch import Endpoint, Request, rpc_method

_VOLUME_FIELDS = frozenset({"id", "base", "metadata"})
# Cinder's volume_metadata columns are 255 characters each.
_USER_METADATA_LENGTH = 255
# A character is at least one byte; parse() applies the exact byte limit.
_MAX_DOCUMENT_LENGTH = MAX_DOCUMENT_BYTES
# Seconds a first export that lost the race to record its backup keeps
# starting afresh (well below callers' RPC timeout); one rerun sees the
# winner's record.
EXPORT_RETRY_DEADLINE = 5.0


def _check_volume(value: Any) -> tuple[str, dict[str, Any], dict[str, str]]:
    volume = validation.record("volume", value, _VOLUME_FIELDS, required=["id"])
    volume_id = validation.uuid("volume.id", volume["id"])
    base = validation.mapping("volume.base", volume.get("base", {}), nullable=True) or {}
    user_metadata = validation.string_map(
        "volume.metadata", volume.get("metadata", {}), nullable=True,
        max_value=_USER_METADATA_LENGTH) or {}
    return volume_id, base, user_metadata


class BackupEndpoint(Endpoint):
    """Glance metadata and backup metadata (SPEC §3.3)."""

    @property
    def store(self) -> BackupStore:
        return self.runtime.backups

    # -- glance metadata -----------------------------------------------------

    @rpc_method()
    def volume_glance_metadata_set(self, request: Request, volume_id: Any,
                                   metadata: Any) -> None:
        """Create or overwrite glance metadata keys of a volume.

        Keys not named stay as they are.  Needs both tokens (composite).

        :raises InvalidInput: a bad volume id or metadata (see
            :func:`agent.backups.glance.check_metadata`).
        :raises VolumePurged: the volume's deletion purged the project's
            glance metadata of it; nothing changes until it is restored
            or destroyed.
        """
        volume_id = validation.uuid("volume_id", volume_id)
        values = glance.check_metadata("metadata", metadata)
        scope = request.scope.require_project("glance metadata without a project")
        glance.update(request.session, volume_id, values, project_id=scope.owner)
        request.notify("glance_metadata.set",
                       glance.set_payload(volume_id, scope.owner, values))

    @rpc_method()
    def volume_glance_metadata_get(self, request: Request, volume_id: Any,
                                   project_id: Any = None) -> dict[str, str]:
        """Return a project's glance metadata of a volume (``{}`` when none).

        :param project_id: (API 1.1) the project whose rows are read, the
            caller's own by default; another project's needs the
            administrator.
        :raises Forbidden: a context without a project, or a member naming
            another project.
        """
        volume_id = validation.uuid("volume_id", volume_id)
        project_id = validation.string("project_id", project_id, nullable=True)
        scope = request.scope.require_project("glance metadata without a project")
        if project_id is not None and not scope.may_act_on(project_id):
            raise exception.Forbidden(action="custos:volume_glance_metadata_get")
        return glance.get(request.session, volume_id, project_id or scope.owner,
                          ownerless=scope.all_projects)

    @rpc_method()
    def volume_glance_metadata_copy(self, request: Request, src_volume_id: Any,
                                    dst_volume_id: Any) -> None:
        """Give the destination exactly the source's glance metadata.

        A purged source reads as having none.

        :raises VolumePurged: the destination's glance metadata was purged.
        """
        src_volume_id = validation.uuid("src_volume_id", src_volume_id)
        dst_volume_id = validation.uuid("dst_volume_id", dst_volume_id)
        scope = request.scope.require_project("glance metadata without a project")
        copied = glance.copy(request.session, src_volume_id, dst_volume_id,
                             project_id=scope.owner, ownerless=scope.all_projects)
        request.notify("glance_metadata.set",
                       glance.set_payload(dst_volume_id, scope.owner, copied,
                                          source_volume_id=src_volume_id))

    # -- backup metadata -----------------------------------------------------

    @rpc_method(transactions.Write(retry_deadline=EXPORT_RETRY_DEADLINE))
    def backup_metadata_export(self, request: Request, backup_id: Any, volume: Any) -> str:
        """Sign a backup's metadata, store it in the service account, return it.

        :returns: the document (JSON text).
        """
        backup_id = validation.uuid("backup_id", backup_id)
        volume_id, base, user_metadata = _check_volume(volume)
        exported = metadata.export(
            request.session, self.runtime.ring, self.store, request.scope,
            backup_id=backup_id, volume_id=volume_id, base=base, metadata=user_metadata)
        request.notify("backup.metadata.export", exported.payload())
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
            request.session, self.runtime.ring, self.store, request.scope,
            backup_id=backup_id, text=text,
            accept_unsigned=conf.accept_unsigned_glance_metadata)
        if restore.tampered:
            refuse = conf.tamper_policy == "fail"
            # Under "fail" the refusal rolls everything back, and the event
            # still goes out: it is about that refusal.
            request.notify("backup.metadata.tampered",
                           restore.tampered_payload(volume_id, conf.tamper_policy),
                           "error", even_on_failure=refuse)
            if refuse:
                raise exception.BackupMetadataTampered(backup_id=backup_id,
                                                       reason=restore.reason)
        metadata.apply_import(request.session, restore, volume_id, request.scope)
        request.notify("backup.metadata.import", restore.payload(volume_id))
        return {"metadata": restore.metadata, "glance_metadata": restore.glance,
                "bootable": restore.bootable, "glance_verified": restore.glance_verified,
                "base": restore.base}

    @rpc_method()
    def backup_metadata_get(self, request: Request, backup_id: Any) -> str:
        """Return a backup's stored document (JSON text), as stored."""
        backup_id = validation.uuid("backup_id", backup_id)
        return metadata.read(request.session, self.store, request.scope, backup_id)

    @rpc_method()
    def backup_metadata_delete(self, request: Request, backup_id: Any) -> None:
        """Forget a backup's record and stored document; absent is fine."""
        backup_id = validation.uuid("backup_id", backup_id)
        removed = metadata.delete(request.session, self.store, request.scope, backup_id)
        if removed is not None:
            request.notify("backup.metadata.delete", removed)
