"""``[profiler]`` options: continuing callers' osprofiler traces.

The names and meanings are osprofiler's own, as Nova and Cinder read
them, so a deployment tool writes the same section for custos. They are
declared here rather than imported from ``osprofiler.opts``, which pulls
in osprofiler's web middleware (WebOb) and cost every agent start more
than half a second; osprofiler itself is imported only when ``enabled``.
"""

from oslo_config import cfg

group = cfg.OptGroup("profiler", title="osprofiler tracing")

opts: list[cfg.Opt] = [
    cfg.BoolOpt("enabled", default=False,
                help="Continue the osprofiler traces callers send in the request "
                     "context (Nova's and Cinder's with their own [profiler] "
                     "enabled)."),
    cfg.StrOpt("hmac_keys", default="SECRET_KEY", secret=True,
               help="Comma-separated keys a caller's trace must be signed with to "
                    "be continued; the same as the callers' [profiler] hmac_keys."),
    cfg.StrOpt("connection_string", default="messaging://",
               help="Where spans go, as an osprofiler driver URL "
                    "(messaging://, redis://, jaeger://, ...), or "
                    "file:///path to append them as JSON lines."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the ``[profiler]`` options on ``conf``."""
    conf.register_group(group)
    conf.register_opts(opts, group=group)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Return the ``[profiler]`` options for the sample generator."""
    return [(group.name, opts)]
