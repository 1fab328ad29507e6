"""Backup metadata: export, import, read and delete (SPEC §3.3).

These functions run inside the request's transaction and take its
session.  They decide; the RPC endpoint queues the notifications.

Whose backup
------------
A backup belongs to the project of the request context that exports it;
an administrator or a service exporting for a project sends a context
naming that project.  Its document lives in that project's service
account (``SERVICE_<project_id>``), and custos notes the backup, its source
volume, project, account and signing key in ``backup_records``.

Records are per project.  Export, import, get and delete look up the
caller's own project's record only, so an operator of another project
meets :class:`~agent.exception.BackupNotFound` for a backup it does not
hold, exactly as for an id nobody holds, and may export under the same
id without a conflict: a backup id taken by one project reveals nothing
to, and takes nothing from, another.  An administrator acts on its own
project's backups here like any operator: the methods name no project to
reach another one with.  An auditor reads every project's records.

Which ids are trusted
---------------------
The signature binds the *source* volume, the one backed up, while an
import names the *target* volume it restores to.  Verification uses the
source volume id and project from custos' own record, never an id read
from the document.  A signed document for a backup custos has no record
of (never exported here, or deleted) therefore cannot verify, and neither
can a signature moved over from another backup.  The signature does not
name the project, so a backup of a volume verifies only for the project
that recorded that pair first (:func:`records.first_of_volume`): another
project that records the same ids later cannot make the owner's document
its own.

Unsigned Cinder documents
-------------------------
Cinder's own version 1 and 2 documents, written before custos took over a
backup, import with their user metadata; their glance metadata only with
``[backup] accept_unsigned_glance_metadata``.  Such a document for a backup
custos *did* sign is a downgrade and counts as tampered.

What the target keeps
---------------------
An import leaves the target volume with exactly the glance metadata it
reports: the verified (or accepted unsigned) keys, or none.  The restored
volume's contents are the backup's, so glance metadata the target held
before no longer describes them.

Store writes and transactions
-----------------------------
Writing or removing a document in the store is the last step of an export
or delete, and is idempotent: if the transaction is retried or its commit
fails, the caller retries and the same file results.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from sqlalchemy.orm import Session

from agent import exception
from agent.backups import document, glance, records
from agent.backups.store import BackupStore
from agent.keystore import signing
from agent.keystore.masterkey import MasterKeyRing
from agent.policy import Scope


@dataclasses.dataclass(frozen=True)
class Exported:
    """A signed document and where it went."""

    text: str
    backup_id: str
    volume_id: str
    project_id: str
    account: str
    key_id: str
    glance_keys: list[str]

    def payload(self) -> dict[str, Any]:
        """Return the ``backup.metadata.export`` payload (ids and key names)."""
        return {"backup_id": self.backup_id, "volume_id": self.volume_id,
                "project_id": self.project_id, "account": self.account,
                "key_id": self.key_id, "glance_keys": self.glance_keys,
                "version": document.FORMAT_VERSION}


@dataclasses.dataclass(frozen=True)
class Restore:
    """What an import restores, decided before anything is written.

    :ivar glance: the glance metadata the target gets (``{}``: none).
    :ivar glance_verified: the signature verified.
    :ivar tampered: a failed check; the glance metadata was dropped.
    :ivar reason: a short fixed text; never document text or key material.
    """

    backup_id: str
    metadata: dict[str, Any]
    base: dict[str, Any]
    glance: dict[str, str]
    glance_verified: bool
    tampered: bool
    reason: str
    version: int | None
    source_volume_id: str | None
    project_id: str | None
    key_id: str | None

    @property
    def bootable(self) -> bool:
        """True when the target gets glance metadata (it came from an image)."""
        return bool(self.glance)

    def payload(self, volume_id: str) -> dict[str, Any]:
        """Return the ``backup.metadata.import`` payload for target ``volume_id``.

        Key names only: glance metadata values never go into a notification.
        """
        return {"backup_id": self.backup_id, "volume_id": volume_id,
                "source_volume_id": self.source_volume_id,
                "project_id": self.project_id, "key_id": self.key_id,
                "version": self.version, "glance_verified": self.glance_verified,
                "bootable": self.bootable, "glance_keys": sorted(self.glance),
                "metadata_keys": sorted(self.metadata)}

    def tampered_payload(self, volume_id: str, tamper_policy: str) -> dict[str, Any]:
        """Return the ``backup.metadata.tampered`` payload."""
        return {"backup_id": self.backup_id, "volume_id": volume_id,
                "source_volume_id": self.source_volume_id,
                "project_id": self.project_id, "key_id": self.key_id,
                "reason": self.reason, "tamper_policy": tamper_policy}


def _caller_project(scope: Scope) -> str:
    """Return the caller's project.

    :raises agent.exception.Forbidden: the context has none: a project-less
        (domain- or system-scoped) token owns nothing.
    """
    return scope.require_project("backup metadata without a project").owner


def export(session: Session, ring: MasterKeyRing, store: BackupStore, scope: Scope, *,
           backup_id: str, volume_id: str, base: dict[str, Any],
           metadata: dict[str, Any]) -> Exported:
    """Sign a backup's metadata, record it and write it to the store.

    :param backup_id: the backup.
    :param volume_id: the volume backed up (the source).
    :param base: the volume's own fields, carried unsigned.
    :param metadata: the volume's user metadata, carried unsigned.
    :returns: the document and where it was written.
    :raises agent.exception.Forbidden: no project in the context.
    :raises agent.exception.InvalidInput: an unsafe project id, or a
        document over the size limit.
    :raises agent.exception.BackupMetadataConflict: the caller's project
        exported the backup before for another volume.
    :raises agent.exception.MasterKeyUnavailable: no master key to open
        the signing key with.
    """
    project_id = _caller_project(scope)
    account = store.account_for(project_id)
    volume_glance = glance.get(session, volume_id, project_id,
                               ownerless=scope.all_projects)
    signing.ensure_active(session, ring)
    active = signing.active(session, ring)
    assert active is not None
    key_id, key = active
    text = document.build(backup_id, volume_id, base, metadata, volume_glance,
                          key_id, key)
    if len(text) > document.MAX_DOCUMENT_BYTES:
        raise exception.InvalidInput(
            field="volume",
            reason=f"the document would be larger than {document.MAX_DOCUMENT_BYTES} bytes")
    records.save(session, backup_id=backup_id, volume_id=volume_id,
                 project_id=project_id, account=account, key_id=key_id)
    store.write(account, backup_id, text)
    return Exported(text=text, backup_id=backup_id, volume_id=volume_id,
                    project_id=project_id, account=account, key_id=key_id,
                    glance_keys=sorted(volume_glance))


def _claims_signature(text: str) -> bool:
    try:
        decoded = json.loads(text)
    except (ValueError, RecursionError):
        return False
    return isinstance(decoded, dict) and document.SIGNATURE in decoded


def evaluate_import(session: Session, ring: MasterKeyRing, store: BackupStore,
                    scope: Scope, *, backup_id: str, text: str | None,
                    accept_unsigned: bool) -> Restore:
    """Read and check a backup's document; decide what an import restores.

    Nothing is written here: :func:`apply_import` does that.

    :param backup_id: the backup to restore.
    :param text: the document the caller holds, or None to read custos'
        own copy from the store.
    :param accept_unsigned: restore glance metadata from Cinder's unsigned
        documents (``[backup] accept_unsigned_glance_metadata``).
    :returns: the decision; ``tampered`` when any check failed.
    :raises agent.exception.BackupNotFound: ``text`` is None and the
        caller's project holds no such backup.
    :raises agent.exception.BackupMetadataInvalid: a given document is not
        a backup metadata document at all.
    :raises agent.exception.BackupMetadataUnsupportedVersion: a given,
        unsigned document has a version custos does not know.
    """
    record = records.get(session, _caller_project(scope), backup_id)
    if record is not None and not scope.may_act_on(record.project_id):
        raise exception.BackupNotFound(backup_id=backup_id)

    def outcome(parsed: document.ParsedDocument | None, *, glance_metadata: dict[str, str],
                verified: bool, tampered: bool, reason: str) -> Restore:
        return Restore(
            backup_id=backup_id,
            metadata=dict(parsed.metadata) if parsed else {},
            base=document.restorable_base(parsed.base, version=parsed.version) if parsed else {},
            glance=glance_metadata, glance_verified=verified, tampered=tampered,
            reason=reason, version=parsed.version if parsed else None,
            source_volume_id=record.volume_id if record else None,
            project_id=record.project_id if record else scope.project_id,
            key_id=record.key_id if record else None)

    def tampered(parsed: document.ParsedDocument | None, reason: str) -> Restore:
        return outcome(parsed, glance_metadata={}, verified=False, tampered=True,
                       reason=reason)

    from_store = text is None
    if text is None:
        if record is None:
            raise exception.BackupNotFound(backup_id=backup_id)
        try:
            text = store.read(record.account, backup_id)
        except exception.BackupMetadataDamaged:
            return tampered(None, "the stored document is not UTF-8 text")

    try:
        parsed = document.parse(text)
    except exception.BackupMetadataDamaged as error:
        return tampered(None, str(error.kwargs.get("reason", "damaged document")))
    except exception.BackupMetadataInvalid:
        if from_store:
            return tampered(None, "the stored document does not parse")
        raise
    except exception.BackupMetadataUnsupportedVersion:
        # The version is part of the signed part: a signed document whose
        # version changed was edited, not written by another release.
        if from_store or _claims_signature(text):
            return tampered(None, "a signed document names an unknown version")
        raise

    if parsed.version in document.CINDER_VERSIONS:
        if record is not None:
            return tampered(parsed, "an unsigned document for a backup custos signed")
        accepted: dict[str, str] = {}
        if accept_unsigned and parsed.glance:
            accepted = glance.check_metadata("document", parsed.glance)
        return outcome(parsed, glance_metadata=accepted, verified=False, tampered=False,
                       reason="unsigned Cinder document")

    if record is None:
        return tampered(parsed, "custos has no record of this backup")
    if not records.first_of_volume(session, record):
        # Worded as any mismatch: the caller must not learn that another
        # project holds this backup.
        return tampered(parsed, "signature does not match")
    result = document.verify(parsed, backup_id, record.volume_id,
                             lambda key_id: signing.lookup(session, ring, key_id))
    if not result:
        return tampered(parsed, result.reason)
    return outcome(parsed, glance_metadata=dict(parsed.glance), verified=True,
                   tampered=False, reason=result.reason)


def apply_import(session: Session, restore: Restore, volume_id: str, scope: Scope) -> None:
    """Give the target volume exactly the glance metadata ``restore`` names.

    The rows belong to the caller's project, as the restored volume does.
    """
    glance.replace(session, volume_id, restore.glance, project_id=_caller_project(scope))


def read(session: Session, store: BackupStore, scope: Scope, backup_id: str) -> str:
    """Return a backup's stored document, for its project's service or an auditor.

    An operator with a service token reads its own project's document:
    the account its project's record names, or without a record its own
    project's service account.  An auditor reads any project's: the one
    project that recorded the backup, or without any record a document in
    any service account (one whose record is gone).

    :raises agent.exception.BackupNotFound: the caller's project holds no
        such document (for an auditor: no project does).
    :raises agent.exception.BackupRecordedInSeveralProjects: an auditor
        asked for an id that more than one project recorded.
    :raises agent.exception.BackupMetadataDamaged: the stored bytes are not
        UTF-8 text.
    """
    if scope.audits:
        return _audit_read(session, store, backup_id)
    project_id = _caller_project(scope)
    record = records.get(session, project_id, backup_id)
    if record is not None:
        if not scope.may_act_on(record.project_id):
            raise exception.BackupNotFound(backup_id=backup_id)
        return store.read(record.account, backup_id)
    return store.read(store.account_for(project_id), backup_id)


#: How many service accounts the auditor's error names at most.
LISTED_ACCOUNTS = 10


def _audit_read(session: Session, store: BackupStore, backup_id: str) -> str:
    held = records.every_project(session, backup_id, limit=LISTED_ACCOUNTS + 1)
    if len(held) > 1:
        accounts = [record.account for record in held[:LISTED_ACCOUNTS]]
        if len(held) > LISTED_ACCOUNTS:
            accounts.append("...")
        raise exception.BackupRecordedInSeveralProjects(
            backup_id=backup_id, accounts=", ".join(accounts))
    if held:
        return store.read(held[0].account, backup_id)
    found = store.find(backup_id)
    if found is None:
        raise exception.BackupNotFound(backup_id=backup_id)
    return store.read(found[0], backup_id)


def _deleted_payload(backup_id: str, volume_id: str | None, project_id: str | None,
                     account: str) -> dict[str, Any]:
    """Return the ``backup.metadata.delete`` payload."""
    return {"backup_id": backup_id, "volume_id": volume_id, "project_id": project_id,
            "account": account}


def delete(session: Session, store: BackupStore, scope: Scope,
           backup_id: str) -> dict[str, Any] | None:
    """Forget a backup: its record and its stored document.

    Deleting a backup custos does not hold is not an error, so a delete
    delivered twice succeeds twice.

    :returns: ``{backup_id, volume_id, project_id, account}`` of what was
        removed, or None when there was nothing.
    :raises agent.exception.BackupNotFound: the caller's project holds
        the backup but the policy does not let the caller delete it.
    """
    project_id = _caller_project(scope)
    account = store.account_for(project_id)
    record = records.get(session, project_id, backup_id)
    if record is None:
        removed = store.delete(account, backup_id)
        return _deleted_payload(backup_id, None, scope.project_id, account) if removed else None
    if not scope.may_act_on(record.project_id):
        raise exception.BackupNotFound(backup_id=backup_id)
    removed_info = _deleted_payload(backup_id, record.volume_id, record.project_id,
                                    record.account)
    account = record.account
    records.delete(session, record)
    store.delete(account, backup_id)
    return removed_info
