"""Console scripts: custos-agent, custos-manage and custos.

Importing this package silences the deprecation notices that libraries
custos depends on print at import time (oslo.messaging still imports
eventlet, which announces its own deprecation), so a person running a
command sees only what concerns them. Every other warning is routed to
the log by :func:`agent.log.setup`.

No command monkey-patches, so eventlet's DNS resolver, which
oslo.messaging imports through oslo.service, would only cost start-up
time (dnspython and what it imports): importing this package turns it off
unless ``EVENTLET_NO_GREENDNS`` says otherwise.
"""

import os
import warnings

os.environ.setdefault("EVENTLET_NO_GREENDNS", "yes")

_LIBRARIES = r"(eventlet|oslo_\w+|keystoneauth1|kombu|amqp|sqlalchemy|alembic|debtcollector|pkg_resources)(\..*)?$"

for _category in (DeprecationWarning, PendingDeprecationWarning):
    warnings.filterwarnings("ignore", category=_category, module=_LIBRARIES)
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
