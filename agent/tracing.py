"""Traces that continue a caller's, with osprofiler, as Nova and Cinder send them.

A caller running with ``[profiler] enabled`` puts ``trace_info``
(``hmac_key``, ``base_id``, ``parent_id``) in the request context it
sends. With ``[profiler] enabled`` here too, and the caller's key among
``[profiler] hmac_keys``, the agent continues that trace: the dispatch
boundary opens a span for the request, its policy check and its
transaction, and the vendordata lookup one per target asked. The spans
go to ``[profiler] connection_string`` through osprofiler's drivers.

A trace whose key is not one of the agent's is not continued (the key is
what keeps strangers on the bus from filling the trace store). A span's
info holds method, mode, target and error code names only.
"""

from __future__ import annotations

import contextlib
import logging
import types
from typing import Any

from oslo_config import cfg

from agent import exception

LOG = logging.getLogger(__name__)

#: True once :func:`setup` found ``[profiler] enabled``.
ENABLED = False
#: osprofiler's ``profiler`` module, imported by :func:`setup` when enabled.
_profiler: Any = None
_KEYS: frozenset[str] = frozenset()
_NULL = contextlib.nullcontext()
#: Longest id or key accepted in ``trace_info`` (uuids are 36 characters).
MAX_FIELD = 255
TRACE_FIELDS = ("hmac_key", "base_id", "parent_id")


def setup(conf: cfg.ConfigOpts, host: str) -> None:
    """Send spans where ``[profiler]`` says, when it is enabled.

    :param conf: the agent's configuration.
    :param host: the agent's name, recorded with each span.
    """
    global ENABLED, _KEYS, _profiler
    section = conf.profiler
    if not section.enabled:
        ENABLED = False
        return
    # Imported here: osprofiler's drivers take a while to import, and an
    # agent that does not trace should not pay for them at start.
    from osprofiler import notifier, profiler

    from agent import tracefile  # noqa: F401 - registers the file:// driver

    _KEYS = frozenset(key.strip() for key in (section.hmac_keys or "").split(",")
                      if key.strip())
    notifier.set(notifier.create(section.connection_string, project="custos",
                                 service="custos-agent", host=host, conf=conf))
    _profiler = profiler
    ENABLED = True
    LOG.info("Continuing callers' traces (osprofiler)")


def continue_trace(ctxt: Any) -> bool:
    """Take the caller's ``trace_info`` out of a wire context and continue it.

    The entry is removed whether or not tracing is enabled, so that it
    never reaches the request context.

    :param ctxt: the request context as it came off the bus (a dict).
    :returns: True when the request is now traced; :func:`end` must follow.
    :raises InvalidInput: with tracing enabled, a ``trace_info`` that is
        not a mapping of bounded strings.
    """
    if not isinstance(ctxt, dict):
        return False
    info = ctxt.pop("trace_info", None)
    if info is None or not ENABLED:
        return False
    if not isinstance(info, dict):
        raise exception.InvalidInput(field="context.trace_info", reason="not a mapping")
    fields = {}
    for name in TRACE_FIELDS:
        value = info.get(name)
        if value is None and name == "parent_id":
            continue
        if not isinstance(value, str) or not 0 < len(value) <= MAX_FIELD:
            raise exception.InvalidInput(field=f"context.trace_info.{name}",
                                         reason=f"not a string of 1 to {MAX_FIELD} characters")
        fields[name] = value
    if fields["hmac_key"] not in _KEYS:
        LOG.debug("Not continuing a trace signed with a key this agent does not hold")
        return False
    _profiler.clean()
    _profiler.init(**fields)
    return True


def end() -> None:
    """Forget the current thread's trace (the worker serves other requests next)."""
    if _profiler is not None:
        _profiler.clean()


class _Span:
    __slots__ = ("name", "info")

    def __init__(self, name: str, info: dict[str, Any]) -> None:
        self.name = name
        self.info = info

    def __enter__(self) -> None:
        _profiler.start(self.name, info=self.info)

    def __exit__(self, etype: type[BaseException] | None, value: BaseException | None,
                 _tb: types.TracebackType | None) -> None:
        # The error's code only: its message may name what the caller sent.
        info = None
        if value is not None:
            code = value.code if isinstance(value, exception.CustosException) else "internal"
            info = {"error": code}
        _profiler.stop(info=info)


class _Resumed:
    __slots__ = ("trace", "span")

    def __init__(self, trace: tuple[str, str, str], span: _Span) -> None:
        self.trace = trace
        self.span = span

    def __enter__(self) -> None:
        _profiler.clean()
        _profiler.init(self.trace[0], base_id=self.trace[1], parent_id=self.trace[2])
        self.span.__enter__()

    def __exit__(self, etype: type[BaseException] | None, value: BaseException | None,
                 tb: types.TracebackType | None) -> None:
        try:
            self.span.__exit__(etype, value, tb)
        finally:
            _profiler.clean()


def handoff() -> tuple[str, str, str] | None:
    """Return what another thread needs to continue the current trace, or None.

    For work a request hands to a thread of its own (a vendordata target's
    lane): pass it to :func:`resumed` there.
    """
    if not ENABLED:
        return None
    prof = _profiler.get()
    if prof is None:
        return None
    return (prof.hmac_key, prof.get_base_id(), prof.get_id())


def resumed(trace: tuple[str, str, str] | None, name: str,
            **info: str) -> contextlib.AbstractContextManager[None]:
    """Return a span of the trace :func:`handoff` gave, on this thread.

    :param trace: :func:`handoff`'s answer; None gives a no-op.
    :param name: the span's name; ``info`` as for :func:`span`.
    """
    if trace is None:
        return _NULL
    return _Resumed(trace, _Span(name, info))


def span(name: str, **info: str) -> contextlib.AbstractContextManager[None]:
    """Return a span of the current trace, or a no-op when the request is not traced.

    :param name: the span's name (``rpc``, ``policy``, ``transaction``, ``vendordata``).
    :param info: names only (method, mode, target), never a value the caller sent.
    """
    if not ENABLED or _profiler.get() is None:
        return _NULL
    return _Span(name, info)
