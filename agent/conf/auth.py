"""``[auth]`` options: the roles behind the default policy rules."""

from oslo_config import cfg

group = cfg.OptGroup("auth", title="Role names used by the default policy")

opts: list[cfg.Opt] = [
    cfg.ListOpt("operator_roles", default=["admin", "member"],
                help="User-token roles that make a caller an operator of "
                     "its project. 'admin' is always the cloud "
                     "administrator."),
    cfg.ListOpt("service_roles", default=["service"],
                help="Service-token roles that mark a request as coming "
                     "from an OpenStack service."),
    cfg.ListOpt("audit_roles", default=["service_auditor"],
                help="Service-token roles that may read, never write, every "
                     "service account."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the ``[auth]`` options on ``conf``."""
    conf.register_group(group)
    conf.register_opts(opts, group=group)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Return the ``[auth]`` options for the sample generator."""
    return [(group.name, opts)]
