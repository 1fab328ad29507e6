"""Reading resource ids out of Nova's and Cinder's notification payloads.

Both services send two styles.  The legacy, unversioned payload is a flat
dict naming the resource as ``instance_id`` or ``volume_id``.  The
versioned payload wraps an oslo.versionedobjects primitive:
``{"nova_object.data": {"uuid": ...}, ...}`` from Nova and
``{"cinder_object.data": {"id": ...}, ...}`` (or ``uuid``) from Cinder.

The project owning the resource is ``tenant_id`` in both services' flat
payloads and in Nova's versioned instance payload, and ``project_id`` in
Cinder's versioned volume; either name is read in either place.
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


_PROJECT_KEYS = ("tenant_id", "project_id")


def project_id(payload: Any) -> str | None:
    """Return the project a notification's resource belongs to.

    :param payload: the notification payload, as received.
    :returns: the project id as a non-empty string of printable characters,
        or ``None`` when the payload names none (or two different ones).
    """
    if not isinstance(payload, dict):
        return None
    places = [payload] + [payload[wrapper] for wrapper in _VERSIONED_DATA
                          if isinstance(payload.get(wrapper), dict)]
    named = {place[key] for place in places for key in _PROJECT_KEYS
             if place.get(key) is not None}
    if len(named) != 1:
        return None
    [value] = named
    if not _usable(value) or not value.isprintable():
        return None
    return str(value)


def _usable(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 255
