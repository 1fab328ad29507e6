"""Nova and Cinder as custos' events come from them: their notifiers, their payloads.

Each service builds its notifiers in its own process, on its own
configuration; here each gets a private ``ConfigOpts`` with the values
the service puts there, so this process's own oslo.messaging defaults are
left alone:

* Nova (``nova/rpc.py``): ``set_transport_defaults('nova')``, so
  ``control_exchange = nova``; ``get_notification_transport(conf)``; a
  legacy notifier on ``[oslo_messaging_notifications] topics``
  (``notifications``) with publisher id ``compute.<host>``
  (``rpc.get_notifier('compute', host)``), and, with
  ``[notifications] notification_format = both``, a versioned notifier on
  ``versioned_notifications`` with publisher id ``nova-compute:<host>``
  (``NotificationPublisher`` source and host).  The driver is the
  operator's ``[oslo_messaging_notifications] driver = messagingv2``.
* Cinder (``cinder/rpc.py``): ``control_exchange = cinder``, the same
  transport and driver, publisher id ``volume.<host>``
  (``rpc.get_notifier('volume', host)``), topic ``notifications``.

Payloads follow the services' builders: Nova's legacy
``compute.instance.delete.end`` carries ``info_from_instance``'s flat dict
(``instance_id``, ``tenant_id``, ...; ``nova/notifications/base.py``); its
versioned ``instance.delete.end`` carries an ``InstanceActionPayload``
primitive (``nova_object.name/namespace/version/data``, ``uuid`` in
``data``).  Cinder's ``volume.delete.end`` carries ``_usage_from_volume``'s
flat dict (``volume_id``, ``tenant_id``, ...;
``cinder/volume/volume_utils.py``); the versioned shape wraps the volume
as ``cinder_object.data`` with its ``id``.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg
from oslo_context import context as oslo_context

from tests.common import PROJECT

USER = "4f0b6c2e1d9a4b7c8e5f3a2d1c0b9a8e"


def service_transport(control_exchange: str, transport_url: str) -> Any:
    """A service's notification transport, built on a configuration of its own.

    ``control_exchange`` is set before the transport exists, as
    ``set_transport_defaults`` does in the service; the driver is
    ``messagingv2``, as the operator configures it.
    """
    conf = cfg.ConfigOpts()
    messaging.TransportURL.parse(conf)  # registers the transport options
    conf([], project=control_exchange, default_config_files=[])
    conf.set_override("control_exchange", control_exchange)
    transport = messaging.get_notification_transport(conf, url=transport_url)
    conf.set_override("driver", ["messagingv2"], group="oslo_messaging_notifications")
    return transport


def service_context() -> dict[str, Any]:
    """The request context a service sends with its notification (a user's, with a token)."""
    return oslo_context.RequestContext(user_id=USER, project_id=PROJECT, roles=["member"],
                                       auth_token="gAAAAAB-a-user-token").to_dict()


@dataclass
class Service:
    """One service's notification transport and notifiers."""

    transport: Any
    legacy: messaging.Notifier
    versioned: messaging.Notifier

    def close(self) -> None:
        self.transport.cleanup()


def nova(transport_url: str, host: str = "compute-1", exchange: str = "nova") -> Service:
    """Nova's notifiers (``nova/rpc.py`` ``init`` with ``notification_format = both``).

    :param exchange: Nova's ``control_exchange``, when the operator changed it.
    """
    transport = service_transport(exchange, transport_url)
    legacy = messaging.Notifier(transport).prepare(publisher_id=f"compute.{host}")
    versioned = messaging.Notifier(transport, topics=["versioned_notifications"]).prepare(
        publisher_id=f"nova-compute:{host}")
    return Service(transport, legacy, versioned)


def cinder(transport_url: str, host: str = "volume-1") -> Service:
    """Cinder's notifier (``cinder/rpc.py``), legacy topic; a versioned one beside it."""
    transport = service_transport("cinder", transport_url)
    legacy = messaging.Notifier(transport).prepare(publisher_id=f"volume.{host}")
    versioned = messaging.Notifier(transport, topics=["versioned_notifications"]).prepare(
        publisher_id=f"volume.{host}")
    return Service(transport, legacy, versioned)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def instance_deleted_legacy(instance_uuid: str) -> dict[str, Any]:
    """``compute.instance.delete.end``'s payload: ``info_from_instance``'s flat dict."""
    return {"tenant_id": PROJECT, "user_id": USER, "instance_id": instance_uuid,
            "display_name": "vm", "hostname": "vm", "host": "compute-1",
            "node": "compute-1", "instance_type": "m1.small", "memory_mb": 2048,
            "vcpus": 1, "root_gb": 20, "state": "deleted", "state_description": "",
            "terminated_at": _now(), "deleted_at": _now(), "image_ref_url": "",
            "metadata": {}}


def instance_deleted_versioned(instance_uuid: str) -> dict[str, Any]:
    """``instance.delete.end``'s payload: an ``InstanceActionPayload`` primitive."""
    return {"nova_object.name": "InstanceActionPayload", "nova_object.namespace": "nova",
            "nova_object.version": "1.8",
            "nova_object.data": {"uuid": instance_uuid, "tenant_id": PROJECT,
                                 "user_id": USER, "host": "compute-1",
                                 "state": "deleted", "task_state": None,
                                 "display_name": "vm", "deleted_at": _now(),
                                 "fault": None, "block_devices": []},
            "nova_object.changes": ["uuid", "state"]}


def volume_deleted_legacy(volume_id: str) -> dict[str, Any]:
    """``volume.delete.end``'s payload: ``_usage_from_volume``'s flat dict."""
    return {"tenant_id": PROJECT, "host": "volume-1@lvm#lvm", "user_id": USER,
            "availability_zone": "nova", "volume_id": volume_id, "volume_type": None,
            "size": 1, "snapshot_id": None, "display_name": "vol",
            "created_at": _now(), "launched_at": _now(), "status": "deleted",
            "metadata": [], "replication_status": None, "glance_metadata": []}


def volume_deleted_versioned(volume_id: str) -> dict[str, Any]:
    """The versioned shape: the volume as a ``cinder_object`` primitive."""
    return {"cinder_object.name": "VolumePayload", "cinder_object.namespace": "cinder",
            "cinder_object.version": "1.0",
            "cinder_object.data": {"id": volume_id, "project_id": PROJECT,
                                   "status": "deleted", "size": 1},
            "cinder_object.changes": ["id", "status"]}


def delete_instance(service: Service, instance_uuid: str, style: str) -> None:
    """Announce an instance's deletion as Nova does, in ``style`` (legacy, versioned)."""
    if style == "legacy":
        service.legacy.info(service_context(), "compute.instance.delete.end",
                            instance_deleted_legacy(instance_uuid))
    else:
        service.versioned.info(service_context(), "instance.delete.end",
                               instance_deleted_versioned(instance_uuid))


def delete_volume(service: Service, volume_id: str, style: str) -> None:
    """Announce a volume's deletion as Cinder does, in ``style`` (legacy, versioned)."""
    if style == "legacy":
        service.legacy.info(service_context(), "volume.delete.end",
                            volume_deleted_legacy(volume_id))
    else:
        service.versioned.info(service_context(), "volume.delete.end",
                               volume_deleted_versioned(volume_id))
