"""Volume drivers that do what a test tells them, loaded as if by entry point."""

from __future__ import annotations

from typing import Any, ClassVar

from agent.drivers.base import DriverRequest, VolumeDriver
from agent.drivers.iscsi_chap import ISCSIChapDriver


class ScriptedDriver(VolumeDriver):
    """Returns ``reply`` (or raises it, if an exception) and records its calls."""

    uses_initiator_data = True
    reply: ClassVar[Any] = None
    calls: ClassVar[list[dict[str, Any]]] = []

    def initialize_connection(self, volume: dict[str, Any], connector: dict[str, Any],
                              initiator_data: dict[str, str] | None,
                              request: DriverRequest) -> dict[str, Any]:
        type(self).calls.append({"volume": volume, "connector": connector,
                                 "initiator_data": initiator_data,
                                 "namespace": request.namespace})
        if isinstance(self.reply, BaseException):
            raise self.reply
        return dict(self.reply) if isinstance(self.reply, dict) else self.reply


class DatalessDriver(ScriptedDriver):
    """Does not ask for initiator data."""

    uses_initiator_data = False


class FailingChapDriver(ISCSIChapDriver):
    """Makes credentials as iscsi_chap does, then fails."""

    def initialize_connection(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        super().initialize_connection(*args, **kwargs)
        raise RuntimeError("target daemon unreachable")


TEST_DRIVERS = {"scripted": ScriptedDriver, "dataless": DatalessDriver,
                "failing_chap": FailingChapDriver}
