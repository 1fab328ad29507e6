"""Remember the answers of requests that create or delete.

``remembered_answers`` keeps, for a while, what a method such as
``secret_generate`` answered to one request, keyed by the message's id, the
caller's project and the method, so that a copy of the request delivered again is
answered the same way instead of running a second time.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from alembic import op
import sqlalchemy as sa

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "remembered_answers",
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(255), nullable=False),
        sa.Column("method", sa.String(64), nullable=False),
        sa.Column("answer", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("request_id", "project_id", "method",
                                name=op.f("pk_remembered_answers")),
    )
    op.create_index(op.f("ix_remembered_answers_created_at"), "remembered_answers",
                    ["created_at"])

