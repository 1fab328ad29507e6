"""``[backup]`` options: the backup metadata store and its checks."""

from oslo_config import cfg

group = cfg.OptGroup("backup", title="Backup metadata options")

opts: list[cfg.Opt] = [
    cfg.StrOpt("store_path",
               help="Root of the backup metadata store. Default: backups "
                    "under state_path."),
    cfg.StrOpt("service_account_prefix", default="SERVICE_",
               help="Prefix of the service accounts documents are kept in; "
                    "the account of a project is this prefix followed by "
                    "its id."),
    cfg.StrOpt("tamper_policy", default="drop", choices=["drop", "fail"],
               help="What an import does with a document whose signature "
                    "does not verify: drop its glance metadata and go on, "
                    "or fail with BackupMetadataTampered."),
    cfg.BoolOpt("accept_unsigned_glance_metadata", default=False,
                help="Restore glance metadata from unsigned (version 1 and 2) "
                     "documents. Anyone who could edit such a document could "
                     "forge it."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the ``[backup]`` options on ``conf``."""
    conf.register_group(group)
    conf.register_opts(opts, group=group)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Return the ``[backup]`` options for the sample generator."""
    return [(group.name, opts)]
