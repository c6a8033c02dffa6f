"""Calls and their legs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cti.db.models

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("pbx", sa.String(length=64), nullable=False),
        sa.Column("direction", sa.String(length=10), nullable=True),
        sa.Column("external_number", sa.String(length=40), nullable=True),
        sa.Column("external_name", sa.String(length=200), nullable=True),
        sa.Column("did", sa.String(length=40), nullable=True),
        sa.Column("queue", sa.String(length=80), nullable=True),
        sa.Column("caller_extension", sa.String(length=10), nullable=True),
        sa.Column("answered_by", sa.String(length=10), nullable=True),
        sa.Column("started_at", cti.db.models.UTCDateTime(), nullable=False),
        sa.Column("answered_at", cti.db.models.UTCDateTime(), nullable=True),
        sa.Column("ended_at", cti.db.models.UTCDateTime(), nullable=True),
        sa.Column("outcome", sa.String(length=12), nullable=True),
        sa.Column("missed", sa.Boolean(), nullable=False),
        sa.Column("in_progress", sa.Boolean(), nullable=False),
        sa.Column("wait_seconds", sa.Float(), nullable=True),
        sa.Column("talk_seconds", sa.Float(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calls")),
    )
    op.create_index(op.f("ix_calls_external_number"), "calls", ["external_number"])
    op.create_index("ix_calls_started_at", "calls", ["started_at", "id"])
    op.create_index("ix_calls_missed_started_at", "calls", ["missed", "started_at"])
    op.create_index("ix_calls_pbx_in_progress", "calls", ["pbx", "in_progress"])
    op.create_table(
        "call_legs",
        sa.Column("call_id", sa.String(length=100), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("extension", sa.String(length=10), nullable=False),
        sa.Column("ring_started_at", cti.db.models.UTCDateTime(), nullable=False),
        sa.Column("answered_at", cti.db.models.UTCDateTime(), nullable=True),
        sa.Column("ended_at", cti.db.models.UTCDateTime(), nullable=True),
        sa.Column("result", sa.String(length=12), nullable=True),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_call_legs_call_id_calls"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("call_id", "seq", name=op.f("pk_call_legs")),
    )
    op.create_index("ix_call_legs_extension", "call_legs", ["extension", "call_id"])


def downgrade() -> None:
    op.drop_index("ix_call_legs_extension", table_name="call_legs")
    op.drop_table("call_legs")
    op.drop_index("ix_calls_pbx_in_progress", table_name="calls")
    op.drop_index("ix_calls_missed_started_at", table_name="calls")
    op.drop_index("ix_calls_started_at", table_name="calls")
    op.drop_index(op.f("ix_calls_external_number"), table_name="calls")
    op.drop_table("calls")
