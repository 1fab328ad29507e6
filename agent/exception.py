"""Every failure custos expects, under one root.

Each class has a message template (``msg_fmt``) filled from keyword
arguments and a stable ``code`` string that callers and scripts can match
on.  The agent raises them from handlers; oslo.messaging carries them back
to a caller that lists ``agent.exception`` in ``allowed_remote_exmods``,
where they are rebuilt from the same keyword arguments, so ``exc.code`` and
``exc.msg`` read the same on both sides of the bus.

Keyword arguments end up in log lines and on the wire: never pass a secret
value, password, token or key to an exception.
"""

from __future__ import annotations

from typing import Any


class CustosException(Exception):
    """Root of every expected custos failure.

    :param message: a ready message; normally omitted so that ``msg_fmt``
        is filled from ``kwargs``.
    :param kwargs: the values named in ``msg_fmt``; kept as ``self.kwargs``
        so the exception survives a trip over the bus.
    """

    msg_fmt = "An unknown custos error occurred."
    code = "custos_error"

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        self.kwargs = kwargs
        try:
            self.msg = self.msg_fmt % kwargs
        except (KeyError, TypeError, ValueError):
            # A template that does not fit its arguments must not hide the
            # original failure behind a formatting error.
            self.msg = self.msg_fmt
        if message is not None and not kwargs:
            self.msg = str(message).split("\n", 1)[0]
        super().__init__(self.msg)

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"code", "error", "message"}`` for JSON output."""
        return {"code": self.code, "error": type(self).__name__.replace("_Remote", ""),
                "message": self.msg}


# -- generic ---------------------------------------------------------------

class InvalidInput(CustosException):
    msg_fmt = "Invalid input for field '%(field)s': %(reason)s"
    code = "invalid_input"


class UnknownMethod(CustosException):
    msg_fmt = "custos-agent has no RPC method '%(method)s'"
    code = "unknown_method"


class Forbidden(CustosException):
    msg_fmt = "Policy does not allow %(action)s"
    code = "forbidden"


class Unauthorized(CustosException):
    """The request carries no token Keystone vouches for ([auth] strategy = keystone)."""

    msg_fmt = "Not authenticated: %(reason)s"
    code = "unauthorized"


class AuthUnavailable(CustosException):
    """Keystone could not be asked about a token the agent has not seen before."""

    msg_fmt = "Keystone cannot validate tokens right now; try again later"
    code = "auth_unavailable"


class RPCVersionCapped(CustosException):
    """Raised by the client, before sending, when its version cap is too low."""

    msg_fmt = ("%(method)s needs RPC API version %(version)s, above this "
               "client's cap %(cap)s ([upgrade_levels] custos); nothing was sent")
    code = "rpc_version_capped"


class ConfigurationError(CustosException):
    msg_fmt = "Configuration error: %(reason)s"
    code = "configuration_error"


class DatabaseUnavailable(CustosException):
    msg_fmt = "The database is unavailable; the request was rolled back"
    code = "database_unavailable"


class DatabaseNotMigrated(CustosException):
    msg_fmt = ("The database schema is at %(current)s, not %(expected)s; "
               "run 'custos-manage db sync'")
    code = "database_not_migrated"


# -- key store -------------------------------------------------------------

class MasterKeyUnavailable(CustosException):
    msg_fmt = "The master key is unavailable: %(reason)s"
    code = "master_key_unavailable"


class MasterKeyPermissions(CustosException):
    """A master key file that group or others can reach, refused as ssh refuses a loose key."""

    msg_fmt = ("The master key file %(path)s has mode %(mode)s; group and others must "
               "have no access (chmod 600 it)")
    code = "master_key_permissions"


class MasterKeyExists(CustosException):
    msg_fmt = "A master key already exists at %(path)s; it was left untouched"
    code = "master_key_exists"


class KeyNotFound(CustosException):
    msg_fmt = "No key with id %(key_id)s"
    code = "key_not_found"


class DecryptionFailed(CustosException):
    msg_fmt = "Stored data for %(object_id)s failed its integrity check"
    code = "decryption_failed"


class NoStagedKey(CustosException):
    msg_fmt = "No staged master key to promote: %(reason)s"
    code = "no_staged_key"


class StagedKeyNotEverywhere(CustosException):
    msg_fmt = ("The staged master key is not held by every node yet (missing on: "
               "%(hosts)s); run 'custos-manage keys stage' there first")
    code = "staged_key_not_everywhere"


class KeyRotationInProgress(CustosException):
    msg_fmt = "Another master key rotation is running; try again once it has finished"
    code = "key_rotation_in_progress"


class KeyRotationIncomplete(CustosException):
    msg_fmt = ("%(count)s wrapped key(s) are still under a retiring master key; "
               "run 'custos-manage keys rotate-master' again to finish")
    code = "key_rotation_incomplete"


# -- secrets ---------------------------------------------------------------

class SecretNotFound(CustosException):
    msg_fmt = "Secret %(secret)s not found"
    code = "secret_not_found"


class SecretUsageConflict(CustosException):
    msg_fmt = ("Secret usage %(usage_type)s '%(usage_id)s' conflicts with "
               "secret %(holder)s")
    code = "secret_usage_conflict"


class SecretOwnedElsewhere(CustosException):
    """An administrator defined or set the value of a UUID another owner holds.

    Members get :class:`SecretNotFound` instead, which says nothing of the
    other owner; the administrator may know the UUID exists, never whose.
    """

    msg_fmt = "Secret %(uuid)s is held outside your project; nothing was changed"
    code = "secret_owned_elsewhere"


class SecretPrivateChange(CustosException):
    msg_fmt = "Secret %(uuid)s is private and cannot be made public"
    code = "secret_private_change"


class SecretPrivate(CustosException):
    msg_fmt = "Secret %(uuid)s is private; its value cannot be read over RPC"
    code = "secret_private"


class SecretNoValue(CustosException):
    msg_fmt = "Secret %(uuid)s has no value"
    code = "secret_no_value"


class QuotaExceeded(CustosException):
    """A limit of what one agent keeps in memory would be passed.

    Names the limit, never the project or the secret.
    """

    msg_fmt = "Quota exceeded: %(limit)s (%(allowed)s) would be passed"
    code = "quota_exceeded"


class InvalidSecretXML(InvalidInput):
    msg_fmt = "Invalid input for field '%(field)s': %(reason)s"
    code = "invalid_secret_xml"


# -- managed keys (castellan) ---------------------------------------------

class ManagedKeyNotFound(CustosException):
    msg_fmt = "Key %(uuid)s not found"
    code = "managed_key_not_found"


class KeyConsumerNotFound(ManagedKeyNotFound):
    """The key exists, but the consumer named is not registered on it."""

    msg_fmt = "Key %(uuid)s has no such consumer"
    code = "key_consumer_not_found"


class KeyHasConsumers(CustosException):
    msg_fmt = "Key %(uuid)s has %(count)s consumer(s); delete it with force to remove it anyway"
    code = "key_has_consumers"


# -- connections -----------------------------------------------------------

class BackendNotFound(CustosException):
    msg_fmt = "No enabled backend named '%(backend)s'"
    code = "backend_not_found"


class VolumeDriverError(CustosException):
    msg_fmt = "Volume driver of backend '%(backend)s' failed: %(reason)s"
    code = "volume_driver_error"


class InvalidDriverUpdate(CustosException):
    msg_fmt = "Driver of backend '%(backend)s' returned a malformed initiator update: %(reason)s"
    code = "invalid_driver_update"


# -- backups ---------------------------------------------------------------

class BackupNotFound(CustosException):
    msg_fmt = "Backup metadata for backup %(backup_id)s not found"
    code = "backup_not_found"


class BackupMetadataTampered(CustosException):
    msg_fmt = "Backup metadata of backup %(backup_id)s failed verification: %(reason)s"
    code = "backup_metadata_tampered"


class BackupMetadataUnsupportedVersion(CustosException):
    msg_fmt = "Backup metadata version %(version)s is not supported"
    code = "backup_metadata_unsupported_version"


# -- vendordata ------------------------------------------------------------

class VendordataFetchFailed(CustosException):
    msg_fmt = "Vendordata target '%(target)s' failed: %(reason)s"
    code = "vendordata_fetch_failed"


class BackupMetadataInvalid(InvalidInput):
    """A backup metadata document that cannot be read as one at all."""

    msg_fmt = "Invalid input for field '%(field)s': %(reason)s"
    code = "backup_metadata_invalid"


class BackupMetadataDamaged(BackupMetadataInvalid):
    """A document that is, or claims to be, custos-signed but is broken.

    Importers treat it as tampering: the signed part cannot be trusted.
    """

    msg_fmt = "Invalid input for field '%(field)s': %(reason)s"
    code = "backup_metadata_damaged"


class BackupMetadataConflict(CustosException):
    """The caller's project already recorded the backup for another volume."""

    msg_fmt = "Backup %(backup_id)s is already recorded for another volume"
    code = "backup_metadata_conflict"


class BackupRecordedInSeveralProjects(CustosException):
    """An auditor asked for a backup id that several projects recorded.

    Only an auditor, who reads every service account, can meet it; the
    accounts named are where each project's document lives.
    """

    msg_fmt = ("Backup %(backup_id)s is recorded in several projects; its "
               "documents are in the service accounts %(accounts)s")
    code = "backup_recorded_in_several_projects"


class EphemeralSecretUsageConflict(SecretUsageConflict):
    """A usage held by an ephemeral secret, named in ``kwargs`` only.

    The holder's UUID travels to the caller as the ``holder`` argument but
    stays out of the message, which the agent logs: nothing of an
    ephemeral secret reaches a log. Catching SecretUsageConflict catches
    it too; its code is its own, as every class's is.
    """

    msg_fmt = "Secret usage %(usage_type)s conflicts with an ephemeral secret of this agent"
    code = "secret_usage_conflict_ephemeral"


# -- purged rows (events) ------------------------------------------------------

class VolumePurged(CustosException):
    """A write to glance metadata that an event purged and that is not destroyed yet.

    The purged rows still hold their keys: a write would revive some keys
    and not others, so the volume's metadata stays as purged until it is
    restored or destroyed.
    """

    msg_fmt = ("Glance metadata of volume %(volume_id)s was purged when the "
               "volume was deleted; nothing was changed")
    code = "volume_purged"


class NothingToRestore(CustosException):
    msg_fmt = "No purged %(kind)s %(id)s to restore"
    code = "nothing_to_restore"


class RestoreNotAnnounced(CustosException):
    """A restore committed, but the broker did not take its notifications."""

    msg_fmt = ("Restored, but not every %(event_type)s notification could be sent: "
               "listeners may not have heard of the restore")
    code = "notification_failed"


class RestoreConflict(SecretUsageConflict):
    """A purged secret's usage is held by a live secret of its project now."""

    msg_fmt = ("Secret %(uuid)s cannot be restored: secret %(holder)s now holds "
               "usage %(usage_type)s '%(usage_id)s'; nothing was restored")
    code = "restore_conflict"
