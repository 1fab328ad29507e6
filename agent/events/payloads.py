"""Reading resource ids out of Nova's and Cinder's notification payloads.

Both services send two styles.  The legacy, unversioned payload is a flat
dict naming the resource as ``instance_id`` or ``volume_id``.  The
versioned payload wraps an oslo.versionedobjects primitive:
``{"nova_object.data": {"uuid": ...}, ...}`` from Nova and
``{"cinder_object.data": {"id": ...}, ...}`` (or ``uuid``) from Cinder.
"""

from __future__ import annotations

from typing import Any

_VERSIONED_DATA = ("nova_object.data", "cinder_object.data")
_VERSIONED_KEYS = ("uuid", "id")


def resource_id(payload: Any, legacy_key: str) -> str | None:
    """Return the id of the resource a notification is about.

    :param payload: the notification payload, as received.
    :param legacy_key: the key of the flat style (``instance_id``,
        ``volume_id``).
    :returns: the id as a non-empty string, or ``None`` when the payload
        names none in either style.
    """
    if not isinstance(payload, dict):
        return None
    value = payload.get(legacy_key)
    if _usable(value):
        return str(value)
    for wrapper in _VERSIONED_DATA:
        data = payload.get(wrapper)
        if not isinstance(data, dict):
            continue
        for key in (*_VERSIONED_KEYS, legacy_key):
            if _usable(data.get(key)):
                return str(data[key])
    return None


def _usable(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 255
