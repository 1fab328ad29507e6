"""``[DEFAULT]`` options of custos-agent."""

import socket

from oslo_config import cfg

opts: list[cfg.Opt] = [
    cfg.HostAddressOpt(
        "host", default=socket.gethostname(), sample_default="<hostname>",
        help="Name of this agent: its RPC server name on topic custos-agent "
             "and the suffix of its notification publisher id."),
    cfg.StrOpt(
        "state_path", default="/var/lib/custos",
        help="Directory holding the SQLite database, the master key and the "
             "backup store unless their own options point elsewhere."),
    cfg.ListOpt(
        "enabled_backends", default=[],
        help="Configuration sections naming the volume backends this agent "
             "serves; each section sets volume_driver."),
    cfg.IntOpt(
        "graceful_shutdown_timeout", default=30, min=0,
        help="Seconds an agent waits for in-flight requests on SIGTERM."),
    cfg.IntOpt(
        "remember_answers_seconds", default=3600, min=0,
        help="Seconds an agent keeps the answer of a request that created or "
             "deleted something (secret_generate, secret_undefine, key_create, "
             "...), so that a copy of the request the broker or the client "
             "delivers again gets the same answer instead of changing state "
             "twice. 0 keeps none."),
    cfg.StrOpt(
        "report_signal", default="SIGUSR2", choices=["SIGUSR1", "SIGUSR2"],
        help="Signal that makes custos-agent log a Guru Meditation report "
             "(threads, configuration with secrets masked, versions)."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the ``[DEFAULT]`` options on ``conf``."""
    conf.register_opts(opts)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Return the ``[DEFAULT]`` options for the sample generator."""
    return [("DEFAULT", opts)]
