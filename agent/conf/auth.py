"""``[auth]`` options: who the agent believes, and the roles behind the default policy."""

from oslo_config import cfg

group = cfg.OptGroup("auth", title="Identity and the role names used by the default policy")

#: Every RPC method but ``health`` needs tokens Keystone validated.
KEYSTONE = "keystone"
#: The context is taken as the caller wrote it (no Keystone on the bus).
TRUSTED = "trusted"

opts: list[cfg.Opt] = [
    cfg.StrOpt("strategy", default=KEYSTONE, choices=[
        (KEYSTONE, "Validate the user and service tokens of every request "
                   "with Keystone ([keystone_authtoken]); what the message "
                   "claims about its caller is ignored."),
        (TRUSTED, "Believe the project, user and roles a message claims. "
                  "Anyone who can publish on the bus is whoever they say: "
                  "only for an agent on a private bus without Keystone.")],
               help="Where the identity the policy checks comes from."),
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
