"""Run code when a request's database transaction ends, by how it ended.

Ephemeral secrets live in memory, outside the transaction.  When a request
changes both (a secret moving between the database and memory, a usage
reserved while its row is being inserted), the memory side must follow the
database's fate: :func:`on_rollback` undoes a memory change if the
transaction does not commit, and :func:`on_end` releases what was held for
the transaction's duration.

Hooks belong to the session's outermost transaction; SAVEPOINTs opened
with ``session.begin_nested()`` do not trigger them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from db import api as db_api

LOG = logging.getLogger(__name__)

_KEY = "custos.secrets.outcome"
_LISTENING = "custos.secrets.outcome.listening"


def on_rollback(session: Session, func: Callable[[], Any]) -> None:
    """Call ``func()`` if the session's transaction ends without a commit."""
    _hooks(session)["rollback"].append(func)


def on_end(session: Session, func: Callable[[], Any]) -> None:
    """Call ``func()`` once the session's transaction has ended either way."""
    _hooks(session)["end"].append(func)


def _hooks(session: Session) -> dict[str, Any]:
    # Its listeners need SQLAlchemy's session, not a read-only request's
    # stand-in for it.
    session = db_api.orm_session(session)
    hooks = session.info.get(_KEY)
    if hooks is None:
        hooks = session.info[_KEY] = {"committed": False, "rollback": [], "end": []}
        if not session.info.get(_LISTENING):
            # Listeners stay for the session's life: removing one while
            # SQLAlchemy dispatches the event is not allowed.
            session.info[_LISTENING] = True
            event.listen(session, "after_commit", _after_commit)
            event.listen(session, "after_transaction_end", _after_transaction_end)
    return hooks


def _after_commit(session: Session) -> None:
    # after_commit also fires for a SAVEPOINT, which is still the session's
    # nested transaction at that point; only the outermost commit counts.
    hooks = session.info.get(_KEY)
    if hooks is not None and not session.in_nested_transaction():
        hooks["committed"] = True


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is not None:
        return
    hooks = session.info.pop(_KEY, None)
    if hooks is None:
        return
    pending = ([] if hooks["committed"] else list(reversed(hooks["rollback"]))) + hooks["end"]
    for func in pending:
        try:
            func()
        except Exception:  # noqa: BLE001 - one failed hook must not skip the others
            LOG.exception("A transaction hook of the secret store failed")
