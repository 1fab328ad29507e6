"""An osprofiler driver that appends span events to a file, one JSON line each.

For a single node or a test, where no trace collector runs: osprofiler
picks it by the ``file`` scheme of ``[profiler] connection_string``
(``file:///var/lib/custos/traces.jsonl``). Imported only when tracing is
enabled, since osprofiler's drivers are slow to import.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import urllib.parse
from typing import Any

from osprofiler.drivers import base

LOG = logging.getLogger(__name__)


class FileDriver(base.Driver):
    """Writes each span event as one JSON line; the file is created mode 0600.

    :param connection_str: ``file:///<absolute path>``.
    """

    def __init__(self, connection_str: str, project: str | None = None,
                 service: str | None = None, host: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(connection_str, project=project, service=service, host=host)
        self.path = urllib.parse.urlparse(connection_str).path
        self._lock = threading.Lock()

    @classmethod
    def get_name(cls) -> str:
        return "file"

    def notify(self, info: dict[str, Any], context: Any = None, **kwargs: Any) -> None:
        """Append one span event; a failure is logged, never raised into a request."""
        line = json.dumps({**info, "project": self.project, "service": self.service},
                          default=str)
        try:
            with self._lock:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                with os.fdopen(fd, "a", encoding="utf-8") as handle:
                    handle.write(line + "\n")
        except OSError as error:
            LOG.warning("Could not write a trace event: %s", error.strerror)
