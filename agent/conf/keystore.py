"""``[keystore]`` options: where the master key lives."""

from oslo_config import cfg

group = cfg.OptGroup("keystore", title="Key store options")

opts: list[cfg.Opt] = [
    cfg.StrOpt(
        "master_key_file",
        help="File holding the 32-byte master key that wraps every data "
             "key. Default: master.key under state_path. Created by "
             "'custos-manage keys init' with mode 0600."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the ``[keystore]`` options on ``conf``."""
    conf.register_group(group)
    conf.register_opts(opts, group=group)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Return the ``[keystore]`` options for the sample generator."""
    return [(group.name, opts)]
