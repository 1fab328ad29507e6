"""``[keystone_authtoken]`` options: how the agent validates callers' tokens.

The names are keystonemiddleware's, so an operator copies the section a
Nova or Cinder node already has. The agent's own service user comes from
keystoneauth1's plugin options in the same section (``auth_type =
password``, ``auth_url``, ``username``, ...); it must be allowed to
validate tokens (Keystone's default policy lets the ``service`` role).
"""

from __future__ import annotations

from oslo_config import cfg

from agent.conf import keystoneauth

group = cfg.OptGroup("keystone_authtoken",
                     title="Token validation with Keystone ([auth] strategy = keystone)")

opts: list[cfg.Opt] = [
    cfg.StrOpt("www_authenticate_uri",
               help="Public Identity API endpoint, for clients (informational; "
                    "the agent validates through the catalog of its own token)."),
    cfg.StrOpt("interface", default="internal",
               help="Interface of the Identity API endpoint the agent uses to "
                    "validate tokens: public, internal or admin."),
    cfg.StrOpt("region_name", help="Region of the Identity API endpoint."),
    cfg.ListOpt("service_token_roles", default=["service"],
                help="A service token counts only when it carries one of "
                     "these roles."),
    cfg.BoolOpt("service_token_roles_required", default=True,
                help="Refuse a service token without a role from "
                     "service_token_roles (Unauthorized). keystonemiddleware "
                     "defaults to false for old deployments; a secret keeper "
                     "does not."),
    cfg.IntOpt("token_cache_time", default=300, min=0,
               help="Seconds a validated token is believed without asking "
                    "Keystone again: a revoked token stops working within "
                    "this time."),
    cfg.FloatOpt("http_connect_timeout", default=3.0, min=0.1,
                 help="Seconds one request to Keystone may take (used when "
                      "the session option 'timeout' is not set)."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the section and keystoneauth1's session and plugin options."""
    conf.register_group(group)
    conf.register_opts(opts, group=group)
    keystoneauth.register_opts(conf, group.name)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Return the section's options for the sample generator."""
    return [(group.name, opts + keystoneauth.list_opts())]
