"""Destroying purged rows once ``[events] purge_grace`` has passed.

Every agent runs a :class:`PurgeReaper`, a thread that wakes every
``[events] purge_interval`` seconds and destroys, in one transaction per
table, at most ``[events] purge_batch`` purged rows whose ``deleted_at``
is older than the grace; a full batch brings the next pass forward to a
second later, so a backlog drains without one long transaction.
``custos-manage db purge`` runs the same passes until nothing is left.
Agents that run passes at once only delete the same rows twice, which
deletes nothing the second time.
"""

from __future__ import annotations

import datetime
import functools
import logging
import threading
from typing import Any

import sqlalchemy as sa
from oslo_config import cfg
from sqlalchemy.orm import Session

from db import api as db_api
from db import models, upsert

LOG = logging.getLogger(__name__)

#: What a purge marks, by the name reports give it.
PURGED: dict[str, Any] = {
    "secrets": models.Secret,
    "glance_metadata": models.VolumeGlanceMetadata,
    "boot_roles": models.InstanceSystemMetadata,
}
#: Seconds before the next pass when the last one found a full batch.
BACKLOG_PAUSE = 1.0


def cutoff(grace_seconds: int) -> datetime.datetime:
    """Return the moment before which a purged row has outlived its grace."""
    return models.utcnow() - datetime.timedelta(seconds=grace_seconds)


def destroy_batch(session: Session, model: Any, before: datetime.datetime,
                  limit: int) -> int:
    """Delete at most ``limit`` rows of ``model`` purged before ``before``.

    The ids are read first: MySQL refuses ``LIMIT`` in an ``IN`` subquery.

    :returns: how many rows were deleted.
    """
    ids = list(session.scalars(sa.select(model.id)
                               .where(model.deleted_at.is_not(None), model.deleted_at < before)
                               .order_by(model.deleted_at).limit(limit)))
    if not ids:
        return 0
    return upsert.rowcount(session.execute(sa.delete(model).where(model.id.in_(ids))))


def destroy_pass(grace_seconds: int, limit: int) -> dict[str, int]:
    """Run one bounded pass: at most ``limit`` rows of each table, a transaction each.

    :param grace_seconds: how long purged rows are kept.
    :param limit: rows per table and pass.
    :returns: rows destroyed per table (see :data:`PURGED`).
    :raises agent.exception.DatabaseUnavailable: the database stays out of reach.
    """
    before = cutoff(grace_seconds)
    destroyed: dict[str, int] = {}
    for name, model in PURGED.items():
        destroyed[name] = db_api.run_in_transaction(
            functools.partial(_destroy, model=model, before=before, limit=limit))
    return destroyed


def _destroy(session: Session, *, model: Any, before: datetime.datetime, limit: int) -> int:
    return destroy_batch(session, model, before, limit)


def destroy_all(grace_seconds: int, limit: int) -> dict[str, int]:
    """Run passes until one finds nothing left to destroy.

    :returns: rows destroyed per table, in all.
    """
    total = {name: 0 for name in PURGED}
    while True:
        destroyed = destroy_pass(grace_seconds, limit)
        for name, count in destroyed.items():
            total[name] += count
        if max(destroyed.values()) < limit:
            return total


class PurgeReaper:
    """The agent's thread that destroys purged rows after the grace.

    :param conf: configuration holding ``[events]``.
    """

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self.grace = conf.events.purge_grace
        self.interval = float(conf.events.purge_interval)
        self.limit = conf.events.purge_batch
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the passes in a daemon thread; the first runs after one interval."""
        self._thread = threading.Thread(target=self._run, name="purge-reaper", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to end and wait up to ``timeout`` seconds for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run_once(self) -> bool:
        """Run one pass; return True when a table had a full batch (more is due).

        A failure is logged and left to the next pass.
        """
        try:
            destroyed = destroy_pass(self.grace, self.limit)
        except Exception as error:  # noqa: BLE001 - the next pass tries again
            LOG.warning("Could not destroy purged rows: %s", type(error).__name__)
            return False
        if any(destroyed.values()):
            LOG.info("Destroyed purged rows past the grace of %ss: %s", self.grace,
                     ", ".join(f"{count} {name}" for name, count in destroyed.items()))
        return max(destroyed.values()) >= self.limit

    def _run(self) -> None:
        wait = self.interval
        while not self._stop.wait(wait):
            wait = BACKLOG_PAUSE if self.run_once() else self.interval
