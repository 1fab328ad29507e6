"""Configuration options of custos, one module per area.

Importing this package registers every option on the global
``oslo_config.cfg.CONF``; oslo.messaging registers its own there too, which
is why custos never uses a private ``ConfigOpts``.
"""

from oslo_config import cfg

from agent.conf import opts

CONF = cfg.CONF

for _module in opts.MODULES:
    _module.register_opts(CONF)
