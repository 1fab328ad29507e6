"""``[database]`` options."""

from oslo_config import cfg

group = cfg.OptGroup("database", title="Database options")

opts: list[cfg.Opt] = [
    cfg.StrOpt(
        "connection", secret=True,
        help="SQLAlchemy URL of the database, for example "
             "postgresql+psycopg2://custos@127.0.0.1/custos or "
             "mysql+pymysql://custos@127.0.0.1/custos. Default: a SQLite "
             "file custos.sqlite under state_path."),
    cfg.IntOpt("max_pool_size", default=10, min=1,
               help="Connections kept open per agent and per pool (not used for "
                    "SQLite). On PostgreSQL reads that change nothing have a pool "
                    "of their own, so an agent holds up to twice max_pool_size plus "
                    "max_overflow connections."),
    cfg.IntOpt("max_overflow", default=20, min=0,
               help="Connections opened above max_pool_size under load."),
    cfg.IntOpt("pool_timeout", default=10, min=1,
               help="Seconds to wait for a free pooled connection."),
    cfg.IntOpt("max_retries", default=3, min=0,
               help="Times a request is retried after a deadlock or a lost "
                    "connection before the caller gets DatabaseUnavailable."),
    cfg.FloatOpt("retry_interval", default=0.2, min=0,
                 help="First pause, in seconds, between database retries; "
                      "it doubles each time."),
    cfg.IntOpt("connect_timeout", default=5, min=1,
               help="Seconds to wait for the database server to accept a "
                    "connection."),
    cfg.BoolOpt("server_prepared_reads", default=True,
                help="On PostgreSQL, have the server prepare each frequent read "
                     "once per connection (PREPARE, then EXECUTE), so that it is "
                     "not planned again on every request. Turn it off when the "
                     "agent reaches PostgreSQL through a pooler that hands one "
                     "client's statements to different server connections "
                     "(PgBouncer in transaction mode)."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the ``[database]`` options on ``conf``."""
    conf.register_group(group)
    conf.register_opts(opts, group=group)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Return the ``[database]`` options for the sample generator."""
    return [(group.name, opts)]
