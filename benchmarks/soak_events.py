"""The soak's other parties on the bus: Nova and Cinder deleting, a telemetry consumer.

:class:`DeletionAnnouncer` takes the volumes and instances the callers are
done with and announces their deletion every so often, with notifiers
configured as Nova and Cinder configure theirs (``tests/services.py``),
in both payload styles, naming the callers' project. On its next round it checks through the RPC API
that the volumes of the previous round were purged.

:class:`Telemetry` drains the agents' own notifications (exchange
``custos``, topic ``notifications``), and Nova's and Cinder's beside
them, as a telemetry service would, and counts them by event type.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

import oslo_messaging as messaging

from benchmarks.soak_calls import MEMBER, Call, Deletions, Recorder
from rpcapi import CustosAPI
from tests import services

#: Deletions of each kind announced per round, at most.
PER_ROUND = 5


class DeletionAnnouncer:
    """Announces finished volumes and instances deleted, every ``interval`` seconds.

    :param url: the run's transport URL.
    :param api: a client to check the purges with.
    :param deletions: where the callers leave what they are done with.
    :param recorder: where the purge checks are recorded.
    """

    def __init__(self, url: str, api: CustosAPI, deletions: Deletions, recorder: Recorder,
                 interval: float) -> None:
        self.nova = services.nova(url)
        self.cinder = services.cinder(url)
        self.api = api
        self.deletions = deletions
        self.recorder = recorder
        self.interval = interval
        self.announced = collections.Counter[str]()
        self.purges_checked = 0
        self.not_purged: list[str] = []
        self._rounds = 0
        self._previous: list[str] = []

    def close(self) -> None:
        self.nova.close()
        self.cinder.close()

    def one_round(self) -> None:
        """Check the previous round's volumes, then announce this round's deletions."""
        self.check_purged()
        style = ("legacy", "versioned")[self._rounds % 2]
        self._rounds += 1
        instances = self.deletions.take("instances", PER_ROUND)
        volumes = self.deletions.take("volumes", PER_ROUND)
        context = services.service_context()
        for instance in instances:
            if style == "legacy":
                self.nova.legacy.info(context, "compute.instance.delete.end",
                                      services.instance_deleted_legacy(instance))
            else:
                self.nova.versioned.info(context, "instance.delete.end",
                                         services.instance_deleted_versioned(instance))
            self.announced[f"instance ({style})"] += 1
        for volume in volumes:
            if style == "legacy":
                self.cinder.legacy.info(context, "volume.delete.end",
                                        services.volume_deleted_legacy(volume))
            else:
                self.cinder.versioned.info(context, "volume.delete.end",
                                           services.volume_deleted_versioned(volume))
            self.announced[f"volume ({style})"] += 1
        self._previous = volumes

    def check_purged(self) -> None:
        """Each volume announced last round has no glance metadata left."""
        for volume in self._previous:
            started = self.recorder_clock()
            try:
                left = self.api.volume_glance_metadata_get(MEMBER, volume)
            except Exception as error:  # noqa: BLE001 - counted as not purged
                left = {"error": type(error).__name__}
            self.recorder.record(Call(started, self.recorder_clock() - started,
                                      "volume_glance_metadata_get", "ok"))
            self.purges_checked += 1
            if left:
                self.not_purged.append(volume)
        self._previous = []

    def recorder_clock(self) -> float:
        return time.monotonic() - self.recorder.started

    def run(self, stop: threading.Event) -> None:
        """Announce a round every ``interval`` seconds until ``stop`` is set."""
        while not stop.wait(self.interval):
            self.one_round()


class TelemetryEndpoint:
    """Counts the agents' notifications by priority and event type."""

    def __init__(self) -> None:
        self.counts = collections.Counter[str]()
        self._lock = threading.Lock()

    def _count(self, event_type: str) -> None:
        with self._lock:
            self.counts[event_type] += 1

    def info(self, ctxt: Any, publisher_id: str, event_type: str, payload: Any,
             metadata: Any) -> None:
        self._count(event_type)

    def error(self, ctxt: Any, publisher_id: str, event_type: str, payload: Any,
              metadata: Any) -> None:
        self._count(f"{event_type} (ERROR)")


class Telemetry:
    """A notification listener as ceilometer's notification agent runs one.

    It consumes, without a pool of its own, the queues every notifier
    declares and binds its topic's messages to (``notifications.info``,
    ``versioned_notifications.info`` and the other priorities): custos'
    announcements on exchange ``custos`` and Nova's and Cinder's on theirs.
    Without a consumer those queues keep every notification for ever.

    :param transport: a notification transport on the run's virtual host.
    """

    EXCHANGES = ("custos", "nova", "cinder")
    TOPICS = ("notifications", "versioned_notifications")

    def __init__(self, transport: Any) -> None:
        self.endpoint = TelemetryEndpoint()
        self.listener = messaging.get_notification_listener(
            transport, [messaging.Target(exchange=exchange, topic=topic)
                        for exchange in self.EXCHANGES for topic in self.TOPICS],
            [self.endpoint])

    def start(self) -> None:
        self.listener.start()

    def stop(self) -> None:
        self.listener.stop()
        self.listener.wait()

    @property
    def counts(self) -> collections.Counter[str]:
        return self.endpoint.counts
