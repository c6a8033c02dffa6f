"""The outbox of calls to write into an external CRM.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cti.db.models

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "crm_outbox",
        sa.Column("call_id", sa.String(length=100), nullable=False),
        sa.Column("call", sa.JSON(), nullable=False),
        sa.Column("external_id", sa.String(length=100), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", cti.db.models.UTCDateTime(), nullable=False),
        sa.Column("done_at", cti.db.models.UTCDateTime(), nullable=True),
        sa.Column("outcome", sa.String(length=300), nullable=True),
        sa.PrimaryKeyConstraint("call_id", name=op.f("pk_crm_outbox")),
    )
    op.create_index("ix_crm_outbox_due", "crm_outbox", ["done_at", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_crm_outbox_due", table_name="crm_outbox")
    op.drop_table("crm_outbox")
