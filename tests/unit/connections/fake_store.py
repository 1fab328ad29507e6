"""A stand-in for the agent's secret store, for connection tests only.

It keeps values unencrypted in the real ``secrets`` table, so it commits,
rolls back and enforces the unique usage exactly as the request's
transaction does; that is all the iscsi_chap driver relies on.
"""

from __future__ import annotations

import uuid as uuid_lib

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from agent import exception
from db.models import Secret


class FakeSecretStore:
    """The four methods drivers use, over the ``secrets`` table."""

    def create_private(self, session: Session, *, project_id: str | None, usage_type: str,
                       usage_id: str, value: bytes, description: str | None = None) -> str:
        uuid = str(uuid_lib.uuid4())
        try:
            with session.begin_nested():
                session.add(Secret(uuid=uuid, project_id=project_id, usage_type=usage_type,
                                   usage_id=usage_id, description=description, private=True,
                                   generated=True, value=value))
        except sa_exc.IntegrityError:
            raise exception.SecretUsageConflict(
                usage_type=usage_type, usage_id=usage_id,
                holder=self.uuid_for_usage(session, usage_type, usage_id)) from None
        return uuid

    def read_private(self, session: Session, uuid: str) -> bytes:
        value = session.scalar(sa.select(Secret.value).where(Secret.uuid == uuid))
        if value is None:
            raise exception.SecretNotFound(secret=uuid)
        return value

    def uuid_for_usage(self, session: Session, usage_type: str, usage_id: str) -> str | None:
        return session.scalar(sa.select(Secret.uuid).where(
            Secret.usage_type == usage_type, Secret.usage_id == usage_id))

    def delete(self, session: Session, uuid: str) -> None:
        session.execute(sa.delete(Secret).where(Secret.uuid == uuid))
