"""Guru Meditation reports: what a running agent is doing, on demand.

``kill -USR2 <pid>`` (the signal is ``[DEFAULT] report_signal``) makes
the agent write one oslo.reports report: every thread's stack, the
configuration with credentials masked, the process and the versions of
custos and the libraries it runs on. The report goes to the agent's log,
or to a file in ``[oslo_reports] log_dir`` when that is set, as with
Cinder's and Nova's services.

oslo.reports prints ``***`` for an option declared secret (transport
URLs, the database connection, keystoneauth passwords) and every other
value as it is. Credentials also hide in values no option declares
secret: a vendordata target written as ``name@https://user:pw@host/?token=``,
an ``auth_url`` with a password in it. The Configuration section here
masks, in every value, the password of a URL's ``user:password@``, a bare
``token@`` before a host, the value of each query parameter and the
fragment, and ``password=``-like pairs (oslo.utils' rules).

The signal handler only starts a thread: the report is built and logged
outside the handler, so a signal that arrives while the main thread holds
a logging lock cannot deadlock it.

:func:`setup` only installs the handler; oslo.reports (with jinja2 and
psutil) is imported when the first report is asked for, so the agent's
start does not wait for it and a signal is handled from the start.
"""

from __future__ import annotations

import functools
import logging
import re
import signal
import threading
from importlib import metadata
from types import FrameType
from typing import TYPE_CHECKING, Any

from oslo_config import cfg
from oslo_utils import strutils

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


MASK = "***"

# A URL anywhere in a value: its scheme, then everything up to white space.
_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<rest>[^\s]*)")


def _mask_authority(authority: str) -> str:
    hosts = []
    for host in authority.split(","):
        userinfo, at, address = host.rpartition("@")
        if at:
            user, colon, _password = userinfo.partition(":")
            host = f"{user}:{MASK}@{address}" if colon else f"{MASK}@{address}"
        hosts.append(host)
    return ",".join(hosts)


def _mask_query(query: str) -> str:
    parts = re.split("([&;])", query)
    return "".join(part if part in ("&", ";", "") else
                   f"{part.partition('=')[0]}={MASK}" if "=" in part else MASK
                   for part in parts)


def _mask_url(match: re.Match[str]) -> str:
    rest = match.group("rest")
    ends = [i for i in (rest.find("?"), rest.find("#")) if i >= 0]
    before_query = rest[:min(ends)] if ends else rest
    # Up to the host after the last "@": a password may hold an unescaped
    # "/", and a broker URL names several user:password@host.
    slash = before_query.find("/", before_query.rfind("@") + 1)
    authority = before_query if slash < 0 else before_query[:slash]
    path, hash_sign, _fragment = rest[len(authority):].partition("#")
    path, question, query = path.partition("?")
    return (match.group("scheme") + _mask_authority(authority) + path + question +
            _mask_query(query) + (hash_sign + MASK if hash_sign else ""))


def mask_credentials(value: Any) -> Any:
    """Return ``value`` as a report may print it: credentials masked.

    :param value: an option's value: text, a list or a dict of them, or
        anything else (returned as it is).
    :returns: the value with, in every text of it, the password of each
        URL's ``user:password@`` (a lone ``user@`` whole), each query
        parameter's value and the fragment replaced by ``***``, and
        ``password=...``-like pairs masked as oslo.utils masks them.
    """
    if isinstance(value, str):
        # oslo.utils' rules would take a URL's "token=..." to the end of the
        # text; a URL is masked by its own parts.
        pieces, start = [], 0
        for url in _URL.finditer(value):
            pieces += [strutils.mask_password(value[start:url.start()], secret=MASK),
                       _mask_url(url)]
            start = url.end()
        pieces.append(strutils.mask_password(value[start:], secret=MASK))
        return "".join(pieces)
    if isinstance(value, (list, tuple)):
        return [mask_credentials(item) for item in value]
    if isinstance(value, dict):
        return {key: mask_credentials(item) for key, item in
                strutils.mask_dict_password(value, secret=MASK).items()}
    return value


def masked_configuration(conf: cfg.ConfigOpts) -> Any:
    """The Configuration section's model: oslo.reports' own, credentials masked.

    :param conf: the configuration to print.
    :returns: a ``ConfigModel`` whose values went through
        :func:`mask_credentials` (options declared secret are ``***``
        already).
    """
    from oslo_reports.models.conf import ConfigModel

    model = ConfigModel(conf)
    for group in list(model.keys()):
        model[group] = {name: mask_credentials(value) for name, value in model[group].items()}
    return model


def _report_class() -> Any:
    """oslo.reports' text report with :func:`masked_configuration` as its Configuration.

    A section whose data cannot be gathered says so; the others are printed.
    """
    from oslo_reports import guru_meditation_report as gmr

    class MaskedGuruMeditation(gmr.TextGuruMeditation):
        def add_section(self, heading: Any, generator: Any, index: int | None = None) -> None:
            if heading == "Configuration":
                generator = functools.partial(masked_configuration, cfg.CONF)
            super().add_section(heading, functools.partial(_gathered, generator), index)

    return MaskedGuruMeditation


def _gathered(generator: Any) -> Any:
    """Run a section's generator; a failure spoils that section, not the report.

    psutil raises for a child process that has exited but was not waited
    for yet, for instance, which would cost the whole report.
    """
    from oslo_reports.models import with_default_views

    try:
        return generator()
    except Exception as error:  # noqa: BLE001 - the other sections still help
        return with_default_views.ModelWithDefaultViews(
            {"unavailable": f"could not be gathered ({type(error).__name__})"})


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
    return str(_report_class()(Version(), frame).run())


def _write(conf: cfg.ConfigOpts) -> None:
    from oslo_reports import guru_meditation_report as gmr

    _prepare(conf)
    log_dir = conf.oslo_reports.log_dir
    if log_dir:
        _report_class().handle_signal(Version(), "custos-agent", log_dir, None)
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
