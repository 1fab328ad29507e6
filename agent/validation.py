"""Checks for RPC arguments: each returns the clean value or raises.

Every failure is :class:`agent.exception.InvalidInput` naming the field
and the rule it broke; a value itself is never echoed, because it may be
a secret.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid as uuid_lib
from collections.abc import Iterable
from typing import Any

from agent.exception import InvalidInput

MAX_STRING = 255

_HEX = "[0-9a-fA-F]"
_UUID_FORMS = re.compile(f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"
                         f"|{_HEX}{{32}}")


def string(field: str, value: Any, max_length: int = MAX_STRING, *,
           allow_empty: bool = False, nullable: bool = False) -> str | None:
    """Return ``value`` if it is a string of at most ``max_length`` characters."""
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise InvalidInput(field=field, reason=f"must be a string, not {_kind(value)}")
    if not value and not allow_empty:
        raise InvalidInput(field=field, reason="must not be empty")
    if len(value) > max_length:
        raise InvalidInput(field=field, reason=f"longer than {max_length} characters")
    if "\x00" in value:
        raise InvalidInput(field=field, reason="contains a NUL character")
    return value


def required_string(field: str, value: Any, max_length: int = MAX_STRING) -> str:
    """Like :func:`string`, never None."""
    result = string(field, value, max_length)
    assert result is not None
    return result


def uuid(field: str, value: Any) -> str:
    """Return ``value`` as a canonical lowercase UUID string.

    The forms libvirt accepts: 36 characters with hyphens, or 32 hex
    digits, in any case.  Python's ``uuid.UUID`` also takes ``{...}`` and
    ``urn:uuid:``, which libvirt (and custos' secret XML) refuse.

    :raises InvalidInput: when ``value`` is not a string in either form.
    """
    if not isinstance(value, str):
        raise InvalidInput(field=field, reason=f"must be a UUID string, not {_kind(value)}")
    if _UUID_FORMS.fullmatch(value) is None:
        raise InvalidInput(field=field, reason="is not a valid UUID")
    return str(uuid_lib.UUID(value))


def boolean(field: str, value: Any, *, nullable: bool = False) -> bool | None:
    """Return ``value`` if it is a real boolean (or None when allowed)."""
    if value is None and nullable:
        return None
    if not isinstance(value, bool):
        raise InvalidInput(field=field, reason=f"must be true or false, not {_kind(value)}")
    return value


def integer(field: str, value: Any, minimum: int | None = None,
            maximum: int | None = None) -> int:
    """Return ``value`` if it is an integer within the bounds."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(field=field, reason=f"must be an integer, not {_kind(value)}")
    if minimum is not None and value < minimum:
        raise InvalidInput(field=field, reason=f"must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise InvalidInput(field=field, reason=f"must be at most {maximum}")
    return value


def mapping(field: str, value: Any, *, nullable: bool = False,
            max_items: int = 1000) -> dict[str, Any] | None:
    """Return ``value`` if it is a dict with string keys."""
    if value is None and nullable:
        return None
    if not isinstance(value, dict):
        raise InvalidInput(field=field, reason=f"must be an object, not {_kind(value)}")
    if len(value) > max_items:
        raise InvalidInput(field=field, reason=f"has more than {max_items} entries")
    for key in value:
        if not isinstance(key, str):
            raise InvalidInput(field=field, reason="keys must be strings")
    return value


def record(field: str, value: Any, fields: Iterable[str],
           required: Iterable[str] = ()) -> dict[str, Any]:
    """Return ``value`` if it is a dict with only ``fields`` and every ``required`` one.

    Errors name the offending member as ``field.member``.
    """
    result = mapping(field, value)
    assert result is not None
    known = set(fields)
    for name in result:
        if name not in known:
            raise InvalidInput(field=f"{field}.{name[:40]}", reason="unexpected field")
    for name in required:
        if name not in result:
            raise InvalidInput(field=f"{field}.{name}", reason="missing field")
    return result


def string_map(field: str, value: Any, *, nullable: bool = False,
               max_key: int = MAX_STRING, max_value: int = MAX_STRING,
               max_items: int = 1000) -> dict[str, str] | None:
    """Return ``value`` if it is a dict of strings to strings within the sizes."""
    result = mapping(field, value, nullable=nullable, max_items=max_items)
    if result is None:
        return None
    for key, item in result.items():
        string(f"{field}.key", key, max_key)
        string(f"{field}[{key[:40]}]", item, max_value, allow_empty=True)
    return result


def string_list(field: str, value: Any, *, nullable: bool = False,
                max_item: int = MAX_STRING, max_items: int = 1000) -> list[str] | None:
    """Return ``value`` if it is a list of non-empty strings."""
    if value is None and nullable:
        return None
    if not isinstance(value, list):
        raise InvalidInput(field=field, reason=f"must be a list, not {_kind(value)}")
    if len(value) > max_items:
        raise InvalidInput(field=field, reason=f"has more than {max_items} items")
    for index, item in enumerate(value):
        string(f"{field}[{index}]", item, max_item)
    return value


def choice(field: str, value: Any, choices: Iterable[str], *,
           nullable: bool = False) -> str | None:
    """Return ``value`` if it is one of ``choices``."""
    if value is None and nullable:
        return None
    options = list(choices)
    if not isinstance(value, str) or value not in options:
        raise InvalidInput(field=field, reason=f"must be one of {', '.join(options)}")
    return value


def base64_bytes(field: str, value: Any, max_bytes: int = 65536, *,
                 allow_empty: bool = True) -> bytes:
    """Decode ``value`` from strict base64 text, at most ``max_bytes`` once decoded.

    :param allow_empty: accept text that decodes to nothing.
    :raises InvalidInput: not base64 text, too long, or empty when not allowed.
    """
    if not isinstance(value, str):
        raise InvalidInput(field=field, reason=f"must be base64 text, not {_kind(value)}")
    if len(value) > (max_bytes // 3 + 1) * 4:
        raise InvalidInput(field=field, reason=f"decodes to more than {max_bytes} bytes")
    try:
        decoded = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise InvalidInput(field=field, reason="is not valid base64") from None
    if len(decoded) > max_bytes:
        raise InvalidInput(field=field, reason=f"decodes to more than {max_bytes} bytes")
    if not decoded and not allow_empty:
        raise InvalidInput(field=field, reason="must not be empty")
    return decoded


#: Context fields that name a caller, each a string of at most MAX_STRING.
CONTEXT_IDS = ("project_id", "user_id", "service_user_id", "service_project_id",
               "domain_id", "user_domain_id", "project_domain_id", "system_scope")
#: Context fields that list roles.
CONTEXT_ROLES = ("roles", "service_roles")
MAX_CONTEXT_ROLES = 100


def request_context(ctx: Any) -> None:
    """Check the identity a request context carries, as any other input.

    The context comes off the wire as the caller wrote it: its ids and
    roles reach policy checks and database columns, so each must be a
    string of at most :data:`MAX_STRING` characters without NUL (an id may
    be null), and the role lists lists of such strings.

    :raises InvalidInput: naming the field (``context.project_id``,
        ``context.roles[2]``), never quoting its value.
    """
    for name in CONTEXT_IDS:
        value = getattr(ctx, name, None)
        if value is not None:
            string(f"context.{name}", value, allow_empty=True)
    for name in CONTEXT_ROLES:
        value = getattr(ctx, name, None)
        if value is None:
            continue
        if isinstance(value, tuple):
            value = list(value)
        string_list(f"context.{name}", value, max_items=MAX_CONTEXT_ROLES)


def _kind(value: Any) -> str:
    return {type(None): "null", bool: "boolean", int: "integer", float: "number",
            str: "string", list: "list", dict: "object"}.get(type(value), type(value).__name__)
