"""Call recordings and the audit of who listened to them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cti.db.models

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    utc = cti.db.models.UTCDateTime
    op.create_table(
        "recordings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(length=100), nullable=False),
        sa.Column("path", sa.String(length=500), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("created_at", utc(), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("deleted_at", utc(), nullable=True),
        sa.ForeignKeyConstraint(
            ["call_id"],
            ["calls.id"],
            name=op.f("fk_recordings_call_id_calls"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recordings")),
    )
    op.create_index("ix_recordings_call_id", "recordings", ["call_id"])
    op.create_index("ix_recordings_path", "recordings", ["path"], unique=True)
    op.create_index("ix_recordings_created_at", "recordings", ["created_at"])
    op.create_table(
        "recording_listens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("recording_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("at", utc(), nullable=False),
        sa.Column("remote", sa.String(length=64), nullable=True),
        sa.Column("range_header", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["recording_id"],
            ["recordings.id"],
            name=op.f("fk_recording_listens_recording_id_recordings"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_recording_listens_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recording_listens")),
    )
    op.create_index(
        "ix_recording_listens_recording_id", "recording_listens", ["recording_id", "at"]
    )


def downgrade() -> None:
    op.drop_index("ix_recording_listens_recording_id", table_name="recording_listens")
    op.drop_table("recording_listens")
    op.drop_index("ix_recordings_created_at", table_name="recordings")
    op.drop_index("ix_recordings_path", table_name="recordings")
    op.drop_index("ix_recordings_call_id", table_name="recordings")
    op.drop_table("recordings")
