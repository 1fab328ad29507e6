"""``[vendordata]`` and ``[vendordata_auth]`` options."""

from oslo_config import cfg

from agent.conf import keystoneauth

group = cfg.OptGroup("vendordata", title="Dynamic vendordata options")
auth_group = cfg.OptGroup(
    "vendordata_auth",
    title="Credentials of the service token sent to vendordata targets")

opts: list[cfg.Opt] = [
    cfg.ListOpt("targets", default=[],
                help="Vendordata services, each as name@url; everything "
                     "after the first @ is the URL. Names must be unique."),
    cfg.FloatOpt("connect_timeout", default=3, min=0.1,
                 help="Seconds to wait for a target to accept a connection."),
    cfg.FloatOpt("read_timeout", default=5, min=0.1,
                 help="Seconds to wait for each read of a target's answer. "
                      "The whole exchange with a target (connect, headers, "
                      "body, retries) ends connect_timeout + read_timeout "
                      "seconds after the lookup started, whatever the "
                      "target does."),
    cfg.FloatOpt("deadline", default=20, min=0.5,
                 help="Seconds one vendordata_get may spend on all targets "
                      "together, retries included; keep it below the "
                      "callers' rpc_response_timeout."),
    cfg.IntOpt("retries", default=2, min=0,
               help="Retries per target of a request that could not be "
                    "sent (connection refused or reset, connect timeout). "
                    "A request the target received in full is never sent "
                    "again."),
    cfg.BoolOpt("failure_fatal", default=False,
                help="Fail vendordata_get with VendordataFetchFailed when a "
                     "target fails, instead of leaving it out."),
    cfg.IntOpt("cache_ttl", default=60, min=0,
               help="Seconds a good answer is reused, unless the target "
                    "sends Cache-Control."),
    cfg.IntOpt("max_response_bytes", default=1048576, min=1,
               help="Largest answer accepted from a target, in bytes, "
                    "on the wire and after gzip decoding."),
    cfg.IntOpt("max_concurrent_per_target", default=8, min=1,
               help="Exchanges with one target at once; each target has "
                    "threads of its own, so a slow target never delays "
                    "another's answer."),
    cfg.IntOpt("cache_max_bytes", default=64 * 1024 * 1024, min=0,
               help="Most bytes of answers the cache holds; the entry "
                    "stored longest ago is dropped to make room."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the vendordata options and keystoneauth1's auth options."""
    conf.register_group(group)
    conf.register_opts(opts, group=group)
    conf.register_group(auth_group)
    keystoneauth.register_opts(conf, auth_group.name)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Return the vendordata options for the sample generator."""
    return [(group.name, opts), (auth_group.name, keystoneauth.list_opts())]
