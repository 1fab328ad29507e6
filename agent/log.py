"""Logging set-up with oslo.log: credentials masked, control characters escaped.

Values are never passed to a log call in the first place;
:class:`MaskCredentialsFilter` is a second line of defence for text that
embeds ``password=...``, ``X-Auth-Token: ...`` and the like (oslo.utils'
masking rules).

A caller's text reaches log lines in two ways: as arguments of a message
(a refused usage, an event type) and as the request context's fields that
oslo.log's formatter writes on every line of a request (request id, user,
project). A newline in either would start a line that reads as the
agent's own, and a terminal escape would rewrite what an operator sees.
:class:`EscapeControlsFormatter` wraps each handler's formatter and writes
every control character of that text as an escape (``\\n``, ``\\x1b``), so
one record is always one line. Code that logs several lines of its own on
purpose (the Guru Meditation report) passes ``extra=KEEP_LINES``.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

from oslo_config import cfg
from oslo_context import context as context_utils
from oslo_log import log as oslo_log
from oslo_utils import strutils

#: ``extra=`` of a log call whose message keeps its own newlines; every
#: other control character is still escaped.
KEEP_LINES = {"custos_keep_lines": True}

# C0 controls, DEL and C1 controls (NEL among them), and the Unicode line
# and paragraph separators that some viewers break lines at.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_BUT_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape_controls(text: str, keep_newlines: bool = False) -> str:
    """Return ``text`` with each control character written as an escape.

    :param text: any text.
    :param keep_newlines: leave ``\\n`` as it is (for text the agent
        itself lays out over several lines).
    :returns: text without control characters (but ``\\n`` when kept) or
        Unicode line separators; a newline reads ``\\n``, an escape
        ``\\x1b``. Backslashes are left as they are.
    """
    if text.isprintable():
        # No control character or separator: most text, checked in C.
        return text
    pattern = _CONTROL_BUT_NEWLINE if keep_newlines else _CONTROL
    return pattern.sub(_escape_char, text)


def _escape_value(value: Any) -> Any:
    if isinstance(value, str):
        return escape_controls(value)
    if isinstance(value, (list, tuple)):
        return [_escape_value(item) for item in value]
    return value


def _safe_str(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:  # noqa: BLE001 - traceback prints such an error by name
        return ""


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and every exception it was raised from or while handling."""
    found: list[BaseException] = []
    waiting = [error]
    while waiting:
        current = waiting.pop()
        if any(current is seen for seen in found):
            continue
        found.append(current)
        waiting.extend(linked for linked in (current.__cause__, current.__context__,
                                             *getattr(current, "exceptions", ()))
                       if linked is not None)
    return found


def _has_controls(error: BaseException) -> bool:
    return any(isinstance(text, str) and _CONTROL.search(text)
               for text in (_safe_str(error), *getattr(error, "__notes__", ())))


def _stand_in(error: BaseException, made: dict[int, BaseException]) -> BaseException:
    """An exception that prints as ``error`` does, its messages escaped.

    It has ``error``'s name, module, traceback and notes, and stands in
    for the exceptions it was raised from or while handling as well.
    """
    if id(error) in made:
        return made[id(error)]
    text = escape_controls(_safe_str(error))
    kind = type(error)
    stand_in_class = type(kind.__name__, (Exception,), {
        "__module__": kind.__module__, "__qualname__": kind.__qualname__,
        "__str__": lambda self: text})
    stand_in = stand_in_class()
    made[id(error)] = stand_in
    stand_in.__traceback__ = error.__traceback__
    stand_in.__suppress_context__ = error.__suppress_context__
    if error.__cause__ is not None:
        stand_in.__cause__ = _stand_in(error.__cause__, made)
    if error.__context__ is not None:
        stand_in.__context__ = _stand_in(error.__context__, made)
    notes = getattr(error, "__notes__", None)
    if isinstance(notes, list):
        stand_in.__notes__ = [escape_controls(str(note)) for note in notes]
    return stand_in


class EscapeControlsFormatter(logging.Formatter):
    """Formats with a handler's own formatter, control characters escaped.

    The record's message (format and arguments), the fields of its request
    context and the text of the exceptions it shows come out escaped; the
    record itself is left as it was, for the next handler.

    :param inner: the formatter oslo.log gave the handler.
    """

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        saved = dict(record.__dict__)
        keep = bool(saved.get("custos_keep_lines"))
        try:
            self._escape(record, keep)
            text = self.inner.format(record)
            with_traceback = bool(record.exc_info)
        finally:
            record.__dict__.clear()
            record.__dict__.update(saved)
        if keep:
            return escape_controls(text, keep_newlines=True)
        if not with_traceback:
            # Everything else oslo.log adds to the line, such as the summary
            # of an exception being handled, is one line too.
            return escape_controls(text)
        # The traceback's lines are the formatter's own; its messages were
        # escaped before.
        line, newline, traceback_lines = text.partition("\n")
        return escape_controls(line) + newline + traceback_lines

    @staticmethod
    def _escape(record: logging.LogRecord, keep: bool) -> None:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            # oslo.log reports a bad format with the message's repr().
            return
        record.msg, record.args = escape_controls(message, keep_newlines=keep), None
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            if any(_has_controls(e) for e in _chain(error)):
                stand_in = _stand_in(error, {})
                record.exc_info = (type(stand_in), stand_in, error.__traceback__)
                record.exc_text = None
        context = record.__dict__.get("context", context_utils.get_current())
        if isinstance(context, context_utils.RequestContext):
            context = context.get_logging_values()
        if isinstance(context, dict):
            # oslo.log reads a context given as a dict as it is.
            record.__dict__["context"] = {key: _escape_value(value)
                                          for key, value in context.items()}


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


def protect(handler: logging.Handler) -> None:
    """Mask credentials and escape control characters in what ``handler`` writes.

    Installs :class:`MaskCredentialsFilter` and wraps the handler's
    formatter in :class:`EscapeControlsFormatter`, once.
    """
    if not any(isinstance(f, MaskCredentialsFilter) for f in handler.filters):
        handler.addFilter(MaskCredentialsFilter())
    if not isinstance(handler.formatter, EscapeControlsFormatter):
        handler.setFormatter(EscapeControlsFormatter(handler.formatter or logging.Formatter()))


def register_options(conf: cfg.ConfigOpts) -> None:
    """Register oslo.log's options (before the configuration is parsed)."""
    oslo_log.register_options(conf)


def setup(conf: cfg.ConfigOpts, name: str = "custos") -> None:
    """Configure logging from ``conf``; protect every handler (:func:`protect`)."""
    oslo_log.setup(conf, name)
    logging.captureWarnings(True)
    for handler in logging.getLogger().handlers:
        protect(handler)
