"""Console scripts: custos-agent, custos-manage and custos.

Importing this package silences the deprecation notices that libraries
custos depends on print at import time (oslo.messaging still imports
eventlet, which announces its own deprecation), so a person running a
command sees only what concerns them. Every other warning is routed to
the log by :func:`agent.log.setup`.
"""

import warnings

_LIBRARIES = r"(eventlet|oslo_\w+|keystoneauth1|kombu|amqp|sqlalchemy|alembic|debtcollector|pkg_resources)(\..*)?$"

for _category in (DeprecationWarning, PendingDeprecationWarning):
    warnings.filterwarnings("ignore", category=_category, module=_LIBRARIES)
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
