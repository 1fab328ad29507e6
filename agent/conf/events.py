"""``[events]`` options: where the agent hears of deleted instances and volumes."""

from oslo_config import cfg

group = cfg.OptGroup("events", title="Events of other services the agent listens to")

opts: list[cfg.Opt] = [
    cfg.ListOpt("exchanges", default=["nova", "cinder"],
                help="Exchanges whose notifications the agent consumes: the "
                     "control_exchange of each service it serves (Nova's "
                     "and Cinder's by default)."),
    cfg.ListOpt("topics", default=["notifications", "versioned_notifications"],
                help="Notification topics consumed on each exchange: the "
                     "legacy and the versioned topic those services send "
                     "on."),
    cfg.IntOpt("max_redeliveries", default=5, min=0,
               help="How often an event whose handling failed for a "
                    "transient reason (database unreachable, deadlock) is "
                    "taken again before it is dropped with an ERROR."),
    cfg.StrOpt("instance_exchange", default="nova",
               help="The only exchange whose instance deletions count: "
                    "Nova's control_exchange. An instance event on any "
                    "other exchange is ignored with a WARNING."),
    cfg.StrOpt("volume_exchange", default="cinder",
               help="The only exchange whose volume deletions count: "
                    "Cinder's control_exchange. A volume event on any "
                    "other exchange is ignored with a WARNING."),
    cfg.IntOpt("purge_grace", default=7 * 24 * 3600, min=0,
               help="Seconds a purged secret, glance metadata or boot "
                    "roles row is kept, unreadable, before it is "
                    "destroyed; until then 'custos-manage restore' "
                    "brings it back."),
    cfg.IntOpt("purge_interval", default=3600, min=1,
               help="Seconds between two passes in which an agent destroys "
                    "purged rows older than purge_grace."),
    cfg.IntOpt("purge_batch", default=500, min=1,
               help="Rows of each table an agent destroys at most in one "
                    "pass (one transaction); a full batch brings the "
                    "next pass forward to a second later."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the ``[events]`` options on ``conf``."""
    conf.register_group(group)
    conf.register_opts(opts, group=group)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Return the ``[events]`` options for the sample generator."""
    return [(group.name, opts)]
