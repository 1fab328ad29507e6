"""Which master key wraps, which is staged, which retires: the database's word.

Nodes keep their key files apart (one file set per node), so the choice of
the key that wraps new data keys cannot be a file: a node that has not
noticed a rotation would go on wrapping under the old key.  The
``master_key_state`` row names the primary, staged and previous keys for
every node at once, and ``master_key_holders`` records which keys each
node's files hold, so a rotation can refuse to promote a key some node
lacks.

The row is also the rotation's barrier.  :func:`wrapping_key` reads it
with a shared lock in the transaction that stores the wrapped key; the
promotion updates it, so it waits for every such transaction and every
later one sees the new primary.  Once the promotion has committed, no row
can be wrapped under the old key any more, and one pass that finds none
left is proof enough to retire it, with no grace period to guess.
"""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from agent import exception
from agent.keystore.masterkey import MasterKey, MasterKeyRing
from db import models, upsert

STATE_ID = 1


@dataclasses.dataclass(frozen=True)
class KeyState:
    """A detached copy of the state row (no key material)."""

    primary_key_id: str
    staged_key_id: str | None
    previous_key_id: str | None


def _select_state() -> sa.Select[models.MasterKeyState]:
    return sa.select(models.MasterKeyState).where(models.MasterKeyState.id == STATE_ID)


def wrapping_key(session: Session, ring: MasterKeyRing) -> MasterKey:
    """Return the key new data keys are wrapped under, in this transaction.

    Holds a shared lock on the state row until the transaction ends, so a
    promotion cannot commit in between.

    :raises MasterKeyUnavailable: when this node does not hold the
        database's primary key (it was never staged here).
    """
    key_id = session.scalar(sa.select(models.MasterKeyState.primary_key_id)
                            .where(models.MasterKeyState.id == STATE_ID)
                            .with_for_update(read=True))
    if key_id is None:
        # No rotation has ever run: the primary file is the primary key.
        return ring.active()
    try:
        return ring.get(key_id)
    except exception.KeyNotFound:
        raise exception.MasterKeyUnavailable(
            reason=f"master key {key_id} is primary but this node does not hold it; "
                   "run 'custos-manage keys stage' on this node") from None


def state_row(session: Session, ring: MasterKeyRing, *,
              lock: bool = False) -> models.MasterKeyState:
    """Return the state row, creating it from the primary file when absent.

    :param lock: take an exclusive row lock (rotations and staging).
    """
    query = _select_state()
    row = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if row is not None:
        return row
    try:
        with session.begin_nested():
            session.add(models.MasterKeyState(id=STATE_ID,
                                              primary_key_id=ring.active().key_id))
    except sa_exc.IntegrityError:
        pass  # another node created it first; read theirs
    return session.scalars(query.with_for_update() if lock else query).one()


def read_state(session: Session) -> KeyState | None:
    """Return a copy of the state row, or None before any was written."""
    row = session.scalars(_select_state()).one_or_none()
    if row is None:
        return None
    return KeyState(row.primary_key_id, row.staged_key_id, row.previous_key_id)


def record_holder(session: Session, host: str, key_ids: list[str]) -> None:
    """Record that ``host``'s key files hold exactly ``key_ids``."""
    session.execute(sa.delete(models.MasterKeyHolder)
                    .where(models.MasterKeyHolder.host == host))
    for key_id in sorted(set(key_ids)):
        session.add(models.MasterKeyHolder(host=host, key_id=key_id, seen_at=models.utcnow()))
    session.flush()


def forget_host(session: Session, host: str) -> int:
    """Forget a node that is gone for good.

    :returns: how many of its records were dropped.
    """
    return upsert.rowcount(session.execute(sa.delete(models.MasterKeyHolder)
                                           .where(models.MasterKeyHolder.host == host)))


def hosts_lacking(session: Session, held_by_all: str, needed: str) -> list[str]:
    """Return the nodes that hold ``held_by_all`` but not ``needed``, sorted."""
    having = sa.select(models.MasterKeyHolder.host).where(
        models.MasterKeyHolder.key_id == needed)
    return sorted(session.scalars(
        sa.select(models.MasterKeyHolder.host)
        .where(models.MasterKeyHolder.key_id == held_by_all,
               models.MasterKeyHolder.host.not_in(having))))


def holders(session: Session) -> dict[str, list[str]]:
    """Return ``{host: [key ids]}`` of every node on record."""
    found: dict[str, list[str]] = {}
    for row in session.scalars(sa.select(models.MasterKeyHolder)
                               .order_by(models.MasterKeyHolder.host,
                                         models.MasterKeyHolder.key_id)):
        found.setdefault(row.host, []).append(row.key_id)
    return found
