"""The reference iSCSI driver: one CHAP identity per initiator.

On an initiator's first attach the driver makes a CHAP username and a
random password and stores both as its own secret (usage type ``iscsi``,
usage id the initiator IQN, in the backend's namespace); the username is
also written to the initiator's data for operators. Later attaches of the
same initiator find the pair again by that usage, in process, and reply
with the same credentials.

CHAP credentials belong to the infrastructure, not to a project: every
project attached through one host shares them. So the secret belongs to
the namespace and to no project, no ``secret_*`` method reaches it, and
the driver never follows a secret UUID found in initiator data, which a
caller could have written. The keys the driver writes itself
(:data:`OWN_KEYS`) are refused by ``initiator_data_update``.

Setting the initiator data key ``chap_rotate`` (``custos initiator-data
chap-rotate``) makes the next attach replace the credentials.

One secret per (namespace, initiator) is enforced by the secret store's
unique usage, so of two first attaches running at once only one creates
it; the other raises :class:`~agent.drivers.base.RetryRequest` and, run
again, finds the winner's credentials.
"""

from __future__ import annotations

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
#: Written by the driver only. ``chap_secret_uuid`` is what releases before
#: usage lookups kept; it is still refused and removed on the next attach.
OWN_KEYS = frozenset({KEY_USERNAME, KEY_SECRET})
# The secret holds "<username>\n<password>": one row read gives a matching
# pair, whatever a concurrent rotation does to the initiator's data.
SEPARATOR = "\n"

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


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


class ISCSIChapDriver(VolumeDriver):
    """iSCSI targets with per-initiator CHAP credentials in the secret store.

    :raises ConfigurationError: when the section sets no ``target_portal``.
    """

    uses_initiator_data = True
    own_initiator_keys = OWN_KEYS
    attach_secret_usage_type = USAGE_TYPE

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
        usage = {"namespace": request.namespace, "usage_type": USAGE_TYPE,
                 "usage_id": initiator}
        stored = request.driver_secret(USAGE_TYPE, initiator)
        if stored is not None:
            held, value = stored
            username, password = _unpack(value.decode())
            if username is None and not rotate:
                # A secret from before the username was kept with it: the
                # username is in the initiator's data.
                username = data.get(KEY_USERNAME) or None
            if username and not rotate:
                if data.get(KEY_USERNAME) == username:
                    return username, password, None
                # The initiator's data lost or changed its copy: write it back.
                return username, password, {"set_values": {KEY_USERNAME: username}}
            # Rotation, or an orphan: replace exactly the secret read here.
            store.delete_driver_secret(session, namespace=request.namespace, uuid=held)
        username = "chap-" + random.token_hex(8)
        password = "".join(random.choice(PASSWORD_ALPHABET)
                           for _ in range(self.password_length))
        try:
            store.create_driver_secret(
                session, value=f"{username}{SEPARATOR}{password}".encode(),
                description=f"CHAP password of {initiator[:120]} for {request.namespace[:60]}",
                **usage)
        except exception.SecretUsageConflict:
            raise RetryRequest() from None
        update: dict[str, Any] = {"set_values": {KEY_USERNAME: username}}
        stale = sorted(key for key in (KEY_ROTATE, KEY_SECRET) if key in data)
        if stale:
            update["remove_values"] = stale
        return username, password, update


def _unpack(text: str) -> tuple[str | None, str]:
    """Return ``(username or None, password)`` from a stored CHAP secret."""
    username, separator, password = text.partition(SEPARATOR)
    if not separator:
        return None, text
    return username, password
