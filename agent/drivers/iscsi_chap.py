"""The reference iSCSI driver: one CHAP identity per initiator.

On an initiator's first attach the driver makes a CHAP username and a
random password, stores the password as a private secret (usage type
``iscsi``) and keeps only the username and the secret's UUID in the
initiator's data. Later attaches of the same initiator read the password
back in process and reply with the same credentials.

Setting the initiator data key ``chap_rotate`` (``custos initiator-data
chap-rotate``) makes the next attach replace the credentials.

One secret per (namespace, initiator) is enforced by the secret store's
unique usage, so of two first attaches running at once only one creates
it; the other raises :class:`~agent.drivers.base.RetryRequest` and, run
again, finds the winner's credentials.
"""

from __future__ import annotations

import hashlib
import secrets as random
import string
from typing import Any

from oslo_config import cfg

from agent import exception, wire
from agent.drivers.base import DriverRequest, RetryRequest, SecretStore, VolumeDriver

USAGE_TYPE = "iscsi"
KEY_USERNAME = wire.CHAP_KEY_USERNAME
KEY_SECRET = wire.CHAP_KEY_SECRET
KEY_ROTATE = wire.CHAP_KEY_ROTATE

MAX_USAGE_ID = 255
PASSWORD_ALPHABET = string.ascii_letters + string.digits

opts = [
    cfg.StrOpt("target_portal",
               help="host:port of the iSCSI portal initiators log in to. "
                    "Required by the iscsi_chap driver."),
    cfg.StrOpt("target_iqn_prefix", default="iqn.2010-10.org.openstack",
               help="Prefix of target IQNs; a volume's target is "
                    "<prefix>:volume-<volume id>."),
    cfg.IntOpt("target_lun", default=0, min=0, max=16383,
               help="LUN of the volume on its target."),
    cfg.IntOpt("chap_password_length", default=16, min=12, max=255,
               help="Length of generated CHAP passwords (letters and "
                    "digits); 12 to 16 suits every common initiator."),
]


def chap_usage_id(namespace: str, initiator: str) -> str:
    """Return the secret usage id of the CHAP password of one initiator.

    Readable while it fits the usage column, hashed beyond.
    """
    usage_id = f"chap:{namespace}:{initiator}"
    if len(usage_id) <= MAX_USAGE_ID:
        return usage_id
    digest = hashlib.sha256(f"{namespace}\x00{initiator}".encode()).hexdigest()
    return f"chap-sha256:{digest}"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


class ISCSIChapDriver(VolumeDriver):
    """iSCSI targets with per-initiator CHAP credentials in the secret store.

    :raises ConfigurationError: when the section sets no ``target_portal``.
    """

    uses_initiator_data = True

    def __init__(self, backend: str, options: Any) -> None:
        super().__init__(backend, options)
        if not options.target_portal:
            raise exception.ConfigurationError(
                reason=f"backend [{backend}] sets no target_portal")
        self.portal: str = options.target_portal
        prefix: str = options.target_iqn_prefix
        self.iqn_prefix = prefix if prefix.endswith(":") else prefix + ":"
        self.lun: int = options.target_lun
        self.password_length: int = options.chap_password_length

    @classmethod
    def driver_opts(cls) -> list[cfg.Opt]:
        return opts

    def initialize_connection(self, volume: dict[str, Any], connector: dict[str, Any],
                              initiator_data: dict[str, str] | None,
                              request: DriverRequest) -> dict[str, Any]:
        """Return iSCSI connection info with the initiator's CHAP credentials.

        :raises InvalidInput: when the connector names no initiator.
        :raises VolumeDriverError: when the agent has no secret store.
        :raises RetryRequest: when a concurrent first attach won the race.
        """
        initiator = connector.get("initiator")
        if not initiator:
            raise exception.InvalidInput(field="connector.initiator",
                                         reason="the iscsi_chap driver needs the initiator IQN")
        if request.secrets is None:
            raise exception.VolumeDriverError(backend=self.backend,
                                              reason="no secret store is available")
        username, password, update = self._credentials(initiator, initiator_data or {},
                                                       request, request.secrets)
        info: dict[str, Any] = {
            "driver_volume_type": "iscsi",
            "data": {
                "target_iqn": f"{self.iqn_prefix}volume-{volume['id']}",
                "target_portal": self.portal,
                "target_lun": self.lun,
                "target_discovered": False,
                "volume_id": volume["id"],
                "auth_method": "CHAP",
                "auth_username": username,
                "auth_password": password,
                "access_mode": "rw",
            },
        }
        if update is not None:
            info["initiator_updates"] = update
        return info

    def _credentials(self, initiator: str, data: dict[str, str], request: DriverRequest,
                     store: SecretStore) -> tuple[str, str, dict[str, Any] | None]:
        session = request.session
        rotate = _truthy(data.get(KEY_ROTATE))
        if not rotate and data.get(KEY_USERNAME) and data.get(KEY_SECRET):
            try:
                stored = store.read_private(session, data[KEY_SECRET])
                return data[KEY_USERNAME], stored.decode(), None
            except exception.SecretNotFound:
                pass  # undefined by an operator: make new credentials below
        usage_id = chap_usage_id(request.namespace, initiator)
        holder = store.uuid_for_usage(session, USAGE_TYPE, usage_id)
        if holder is not None:
            if not rotate:
                # Under READ COMMITTED the holder may have committed after
                # the agent read the rows; read them again before deciding
                # the secret is an orphan.
                fresh = request.read_initiator_data(initiator)
                if (fresh.get(KEY_SECRET) == holder and fresh.get(KEY_USERNAME)
                        and not _truthy(fresh.get(KEY_ROTATE))):
                    return fresh[KEY_USERNAME], store.read_private(session, holder).decode(), None
            store.delete(session, holder)
        username = "chap-" + random.token_hex(8)
        password = "".join(random.choice(PASSWORD_ALPHABET)
                           for _ in range(self.password_length))
        try:
            secret_uuid = store.create_private(
                session, project_id=None, usage_type=USAGE_TYPE, usage_id=usage_id,
                value=password.encode(),
                description=f"CHAP password of {initiator[:120]} for {request.namespace[:60]}")
        except exception.SecretUsageConflict:
            raise RetryRequest() from None
        update: dict[str, Any] = {"set_values": {KEY_USERNAME: username, KEY_SECRET: secret_uuid}}
        if KEY_ROTATE in data:
            update["remove_values"] = [KEY_ROTATE]
        return username, password, update
