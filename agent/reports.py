"""Guru Meditation reports: what a running agent is doing, on demand.

``kill -USR2 <pid>`` (the signal is ``[DEFAULT] report_signal``) makes
the agent write one oslo.reports report: every thread's stack, the
configuration with secret options masked, the process and the versions of
custos and the libraries it runs on. The report goes to the agent's log,
or to a file in ``[oslo_reports] log_dir`` when that is set, as with
Cinder's and Nova's services.

The signal handler only starts a thread: the report is built and logged
outside the handler, so a signal that arrives while the main thread holds
a logging lock cannot deadlock it.

:func:`setup` only installs the handler; oslo.reports (with jinja2 and
psutil) is imported when the first report is asked for, so the agent's
start does not wait for it and a signal is handled from the start.
"""

from __future__ import annotations

import logging
import signal
import threading
from importlib import metadata
from types import FrameType
from typing import TYPE_CHECKING, Any

from oslo_config import cfg

import agent
from agent import log

if TYPE_CHECKING:
    from oslo_reports.models import with_default_views

LOG = logging.getLogger(__name__)

# The libraries whose versions decide how the agent behaves on the wire and
# in the database.
LIBRARIES = ("oslo.messaging", "kombu", "amqp", "oslo.config", "oslo.context",
             "oslo.policy", "oslo.log", "SQLAlchemy", "alembic", "psycopg2-binary",
             "PyMySQL", "cryptography", "keystoneauth1", "tenacity", "defusedxml")


class Version:
    """The product description oslo.reports prints in its Package section."""

    @staticmethod
    def vendor_string() -> str:
        return "custos"

    @staticmethod
    def product_string() -> str:
        return "custos-agent"

    @staticmethod
    def version_string_with_package() -> str:
        return agent.__version__


def library_versions() -> with_default_views.ModelWithDefaultViews:
    """Return the installed version of each library in :data:`LIBRARIES`."""
    from oslo_reports.models import with_default_views

    versions: dict[str, str] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return with_default_views.ModelWithDefaultViews(versions)


_prepare_lock = threading.Lock()


def _prepare(conf: cfg.ConfigOpts) -> None:
    """Load oslo.reports and register its options and the Libraries section, once."""
    from oslo_reports import guru_meditation_report as gmr
    from oslo_reports import opts as gmr_opts

    with _prepare_lock:
        if "oslo_reports" not in conf:
            gmr_opts.set_defaults(conf)
        sections = getattr(gmr.TextGuruMeditation, "persistent_sections", [])
        if not any(title == "Libraries" for title, _ in sections):
            gmr.TextGuruMeditation.register_section("Libraries", library_versions)


def build(frame: FrameType | None = None) -> str:
    """Return the text of one report."""
    from oslo_reports import guru_meditation_report as gmr

    _prepare(cfg.CONF)
    return str(gmr.TextGuruMeditation(Version(), frame).run())


def _write(conf: cfg.ConfigOpts) -> None:
    from oslo_reports import guru_meditation_report as gmr

    _prepare(conf)
    log_dir = conf.oslo_reports.log_dir
    if log_dir:
        gmr.TextGuruMeditation.handle_signal(Version(), "custos-agent", log_dir, None)
        LOG.info("Guru Meditation report written to %s", log_dir)
        return
    try:
        text = build()
    except Exception:  # noqa: BLE001 - a report must never stop the agent
        LOG.exception("Could not build the Guru Meditation report")
        return
    LOG.info("Guru Meditation report follows\n%s", text, extra=log.KEEP_LINES)


def setup(conf: cfg.ConfigOpts) -> None:
    """Write a report to the log whenever ``[DEFAULT] report_signal`` arrives.

    :param conf: the parsed configuration (it is part of the report).
    """
    signum = getattr(signal, conf.report_signal)

    def handle(_signum: int, _frame: Any) -> None:
        threading.Thread(target=_write, args=(conf,), name="guru-meditation",
                         daemon=True).start()

    signal.signal(signum, handle)
