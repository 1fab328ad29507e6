"""The initiator update a driver returns inside its connection info.

Drivers return ``initiator_updates`` (Cinder's driver-private-data
blueprint) or ``initiator_update`` (what Cinder's manager and its Pure
driver actually used): ``{"set_values": {key: value}, "remove_values":
[key, ...]}``. Anything else is refused, never dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.exception import InvalidDriverUpdate

FIELDS = ("initiator_updates", "initiator_update")
MAX_STRING = 255


@dataclass
class InitiatorUpdate:
    """Keys to set and keys to remove for one initiator."""

    set_values: dict[str, str] = field(default_factory=dict)
    remove_values: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.set_values or self.remove_values)

    def keys_set(self) -> list[str]:
        """The names of the keys set, sorted."""
        return sorted(self.set_values)

    def keys_removed(self) -> list[str]:
        """The names of the keys removed, sorted, each once."""
        return sorted(set(self.remove_values))

    def payload(self, initiator: str | None, namespace: str) -> dict[str, Any]:
        """Return the ``initiator_data.update`` payload: key names, never values."""
        return {"initiator": initiator, "namespace": namespace,
                "keys_set": self.keys_set(), "keys_removed": self.keys_removed()}


def _check_key(backend: str, where: str, key: Any) -> str:
    if not isinstance(key, str) or not key or len(key) > MAX_STRING:
        raise InvalidDriverUpdate(
            backend=backend, reason=f"{where} keys must be strings of 1 to {MAX_STRING} characters")
    return key


def pop_update(connection_info: dict[str, Any], backend: str) -> InitiatorUpdate | None:
    """Remove the update field from ``connection_info`` and return it checked.

    :returns: the update, or None when the driver returned none.
    :raises InvalidDriverUpdate: when both spellings are present, or the
        update has unknown fields or non-string keys or values. The
        message never quotes a value.
    """
    present = [name for name in FIELDS if name in connection_info]
    if not present:
        return None
    if len(present) > 1:
        raise InvalidDriverUpdate(backend=backend,
                                  reason="both initiator_updates and initiator_update are set")
    raw = connection_info.pop(present[0])
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidDriverUpdate(backend=backend, reason="the update is not an object")
    unknown = sorted(str(name)[:40] for name in raw if name not in ("set_values", "remove_values"))
    if unknown:
        raise InvalidDriverUpdate(backend=backend, reason=f"unknown fields {', '.join(unknown)}")
    update = InitiatorUpdate()
    set_values = raw.get("set_values") or {}
    if not isinstance(set_values, dict):
        raise InvalidDriverUpdate(backend=backend, reason="set_values is not an object")
    for key, value in set_values.items():
        _check_key(backend, "set_values", key)
        if not isinstance(value, str) or len(value) > MAX_STRING:
            raise InvalidDriverUpdate(
                backend=backend,
                reason=f"set_values[{key[:40]}] must be a string of at most {MAX_STRING} characters")
        update.set_values[key] = value
    remove_values = raw.get("remove_values") or []
    if not isinstance(remove_values, list):
        raise InvalidDriverUpdate(backend=backend, reason="remove_values is not a list")
    for key in remove_values:
        update.remove_values.append(_check_key(backend, "remove_values", key))
    both = sorted(set(update.set_values) & set(update.remove_values))
    if both:
        raise InvalidDriverUpdate(backend=backend,
                                  reason=f"keys both set and removed: {', '.join(k[:40] for k in both)}")
    return update
