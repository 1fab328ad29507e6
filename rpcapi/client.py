"""The custos-agent RPC client class."""

from __future__ import annotations

from rpcapi.backups import BackupsAPI
from rpcapi.connections import ConnectionsAPI
from rpcapi.secrets import SecretsAPI
from rpcapi.service import ServiceAPI
from rpcapi.vendordata import VendordataAPI


class CustosAPI(ServiceAPI, SecretsAPI, ConnectionsAPI, BackupsAPI, VendordataAPI):
    """Client side of the custos-agent RPC API (exchange ``custos``, topic ``custos-agent``).

    Every method takes the request context first. Expected failures are
    raised as their own :mod:`agent.exception` classes. A method added
    after 1.0 raises :class:`agent.exception.RPCVersionCapped`, without
    sending, while the version cap (``[upgrade_levels] custos``) is below
    the version that added it.

    API version history:

    * 1.0 - Initial version: health; initialize_connection,
      terminate_connection, initiator_data_get, initiator_data_update;
      secret_define_xml, secret_get_xml_desc, secret_set_value,
      secret_get_value, secret_undefine, secret_list,
      secret_lookup_by_usage, secret_generate;
      volume_glance_metadata_set/get/copy, backup_metadata_export,
      backup_metadata_import, backup_metadata_get,
      backup_metadata_delete; instance_boot_roles_set, vendordata_get.
    * 1.1 - Key manager backend for castellan: key_create,
      key_create_pair, key_store, key_get, key_list, key_delete,
      key_consumer_add, key_consumer_remove. secret_lookup_by_usage
      takes ``project_id`` (an administrator searching another project).
    """

    RPC_API_VERSION = "1.1"
    RPC_BASE_VERSION = "1.0"
