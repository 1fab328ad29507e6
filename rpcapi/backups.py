"""Client methods for glance metadata and backup metadata (SPEC §3.3).

Every method here except ``volume_glance_metadata_get`` needs a composite
context: a user token with an operator role for the project together with
a service token (``service_roles``); ``backup_metadata_get`` also serves a
service token with an audit role alone.  Anything less is ``Forbidden``.
"""

from __future__ import annotations

from typing import Any

from rpcapi.base import BaseAPI


class BackupsAPI(BaseAPI):
    """Methods for glance metadata and backup metadata."""

    def volume_glance_metadata_set(self, ctxt: Any, volume_id: str,
                                   metadata: dict[str, str], wait: bool = False) -> None:
        """Create or overwrite glance metadata keys of a volume (a cast).

        :param volume_id: the volume (UUID).
        :param metadata: ``{key: value}``, strings; keys up to 255
            characters; other keys of the volume stay.
        :param wait: call instead of cast and return after the commit.
        :raises agent.exception.InvalidInput: (with ``wait``) bad arguments.
        :raises agent.exception.Forbidden: (with ``wait``) not both tokens.
        """
        return self._cast(ctxt, "volume_glance_metadata_set", wait=wait,
                          volume_id=volume_id, metadata=metadata)

    def volume_glance_metadata_get(self, ctxt: Any, volume_id: str,
                                   project_id: str | None = None) -> dict[str, str]:
        """Return a project's glance metadata of a volume (``{}`` when it has none).

        :param project_id: (API 1.1, administrators) read this project's
            rows instead of the caller's; None reads the caller's.
        :raises agent.exception.Forbidden: not an operator of the project.
        :raises RPCVersionCapped: ``project_id`` given while the version
            cap is 1.0 (nothing is sent).
        """
        if project_id is None:
            return self._call(ctxt, "volume_glance_metadata_get", volume_id=volume_id)
        return self._call(ctxt, "volume_glance_metadata_get", version="1.1",
                          volume_id=volume_id, project_id=project_id)

    def volume_glance_metadata_copy(self, ctxt: Any, src_volume_id: str,
                                    dst_volume_id: str, wait: bool = False) -> None:
        """Replace the destination's glance metadata with the source's (a cast).

        For the snapshot and clone paths.  The destination ends with the
        source's keys only (none when the source has none).

        :param wait: call instead of cast and return after the commit.
        """
        return self._cast(ctxt, "volume_glance_metadata_copy", wait=wait,
                          src_volume_id=src_volume_id, dst_volume_id=dst_volume_id)

    def backup_metadata_export(self, ctxt: Any, backup_id: str,
                               volume: dict[str, Any]) -> str:
        """Sign a backup's metadata and keep it in the project's service account.

        :param backup_id: the backup (UUID).
        :param volume: ``{"id": uuid, "base": {...}, "metadata": {...}}``,
            the volume backed up; its glance metadata comes from custos.
        :returns: the signed document (JSON text); store it unchanged.
        :raises agent.exception.BackupMetadataConflict: the caller's
            project exported the backup before for another volume.
        """
        return self._call(ctxt, "backup_metadata_export", backup_id=backup_id,
                          volume=volume)

    def backup_metadata_import(self, ctxt: Any, backup_id: str, volume_id: str,
                               document: str | None = None) -> dict[str, Any]:
        """Verify a backup's metadata and restore it onto a volume.

        :param backup_id: the backup restored.
        :param volume_id: the restore target.
        :param document: the document kept with the backup; None reads
            custos' own copy.  Cinder's version 1 and 2 documents are
            accepted too.
        :returns: ``{metadata, glance_metadata, bootable, glance_verified,
            base}``; a failed check gives ``glance_verified: false`` and no
            glance metadata.
        :raises agent.exception.BackupMetadataTampered: a failed check
            under ``[backup] tamper_policy = fail``.
        :raises agent.exception.BackupMetadataUnsupportedVersion: an
            unsigned document of an unknown version.
        :raises agent.exception.BackupNotFound: no stored document.
        """
        return self._call(ctxt, "backup_metadata_import", backup_id=backup_id,
                          volume_id=volume_id, document=document)

    def backup_metadata_get(self, ctxt: Any, backup_id: str) -> str:
        """Return a backup's stored document (JSON text) as stored.

        :raises agent.exception.BackupNotFound: none stored in the
            caller's project (for an auditor: in any project).
        :raises agent.exception.BackupRecordedInSeveralProjects: an auditor
            named an id that several projects recorded.
        """
        return self._call(ctxt, "backup_metadata_get", backup_id=backup_id)

    def backup_metadata_delete(self, ctxt: Any, backup_id: str) -> None:
        """Forget the caller's project's record and document of a backup.

        Absent is not an error; another project's backup of the same id
        is untouched.
        """
        return self._call(ctxt, "backup_metadata_delete", backup_id=backup_id)
