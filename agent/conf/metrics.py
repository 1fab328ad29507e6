"""``[metrics]`` options: the Prometheus endpoint an operator scrapes."""

from oslo_config import cfg

group = cfg.OptGroup("metrics", title="Prometheus metrics of the agent")

opts: list[cfg.Opt] = [
    cfg.StrOpt("bind", default="",
               help="host:port the agent serves its Prometheus metrics on "
                    "(/metrics), e.g. 127.0.0.1:9464. Empty: no endpoint. "
                    "The metrics name RPC methods, error codes and "
                    "vendordata targets, never an id, project or token, "
                    "but they still tell who watches the agent how busy it "
                    "is: bind it to loopback or a management network."),
    cfg.BoolOpt("allow_remote", default=False,
                help="Say that binding the metrics endpoint beyond "
                     "loopback is meant (a management network, a "
                     "firewalled port). Without it, 'custos-status upgrade "
                     "check' warns about such a bind."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the ``[metrics]`` options on ``conf``."""
    conf.register_group(group)
    conf.register_opts(opts, group=group)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Return the ``[metrics]`` options for the sample generator."""
    return [(group.name, opts)]
