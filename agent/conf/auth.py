"""``[auth]`` options: who the agent believes, and the roles behind the default policy."""

from oslo_config import cfg

from agent import wire

group = cfg.OptGroup("auth", title="Identity and the role names used by the default policy")

#: Every RPC method but ``health`` needs tokens Keystone validated.
KEYSTONE = wire.AUTH_KEYSTONE
#: The context is taken as the caller wrote it (no Keystone on the bus).
TRUSTED = wire.AUTH_TRUSTED

opts: list[cfg.Opt] = [
    wire.AUTH_STRATEGY_OPT,
    cfg.IntOpt("identity_cache_size", default=50000, min=1,
               help="Most validated tokens remembered at once (keystone "
                    "strategy); the least recently used is forgotten first."),
    cfg.IntOpt("refused_token_cache_time", default=10, min=0,
               help="Seconds a token Keystone refused is refused again "
                    "without asking Keystone (keystone strategy)."),
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
