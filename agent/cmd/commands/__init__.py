"""Sub-commands of the ``custos`` client, one module per domain.

Each module has ``register(subparsers)``; every parser it adds sets
``handler(api, ctxt, args) -> result``, whose result is printed as JSON.
"""

from agent.cmd.commands import backups, connections, keys, secrets, service, vendordata

MODULES = [service, secrets, connections, backups, vendordata, keys]
