"""``[secrets]`` options: bounds on what one agent keeps in memory."""

from oslo_config import cfg

group = cfg.OptGroup("secrets", title="Secret options")

#: Unless set otherwise, one project may hold this fraction of the bytes
#: of ephemeral secrets an agent holds.
PROJECT_SHARE_DIVISOR = 16

opts: list[cfg.Opt] = [
    cfg.IntOpt(
        "max_ephemeral_per_project", default=1000, min=0,
        help="Most ephemeral secrets one project may hold in this agent; "
             "a definition past it gets QuotaExceeded."),
    cfg.IntOpt(
        "max_ephemeral_bytes", default=64 * 1024 * 1024, min=0,
        help="Most bytes of ephemeral secrets (values plus definitions) "
             "this agent holds for all projects together; a definition or "
             "value past it gets QuotaExceeded."),
    cfg.IntOpt(
        "max_ephemeral_bytes_per_project", default=None, min=0,
        help="Most bytes of ephemeral secrets (values plus definitions) "
             "one project may hold in this agent, so that one project "
             "cannot take the whole of max_ephemeral_bytes from the others; "
             "a definition or value past it gets QuotaExceeded. Unset: "
             f"max_ephemeral_bytes / {PROJECT_SHARE_DIVISOR}."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the ``[secrets]`` options on ``conf``."""
    conf.register_group(group)
    conf.register_opts(opts, group=group)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Return the ``[secrets]`` options for the sample generator."""
    return [(group.name, opts)]
