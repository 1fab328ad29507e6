"""Logging set-up with oslo.log, and a filter that masks credentials.

Values are never passed to a log call in the first place; the filter is
a second line of defence for text that embeds ``password=...``,
``X-Auth-Token: ...`` and the like (oslo.utils' masking rules).
"""

from __future__ import annotations

import logging

from oslo_config import cfg
from oslo_log import log as oslo_log
from oslo_utils import strutils


class MaskCredentialsFilter(logging.Filter):
    """Rewrites a record's message with credentials masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        masked = strutils.mask_password(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def register_options(conf: cfg.ConfigOpts) -> None:
    """Register oslo.log's options (before the configuration is parsed)."""
    oslo_log.register_options(conf)


def setup(conf: cfg.ConfigOpts, name: str = "custos") -> None:
    """Configure logging from ``conf`` and install the masking filter."""
    oslo_log.setup(conf, name)
    logging.captureWarnings(True)
    mask = MaskCredentialsFilter()
    for handler in logging.getLogger().handlers:
        handler.addFilter(mask)
