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
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the ``[events]`` options on ``conf``."""
    conf.register_group(group)
    conf.register_opts(opts, group=group)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Return the ``[events]`` options for the sample generator."""
    return [(group.name, opts)]
