"""SMS: sent and received messages, and received parts awaiting the rest of their message.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cti.db.models

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    utc = cti.db.models.UTCDateTime
    op.create_table(
        "sms_messages",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("direction", sa.String(length=3), nullable=False),
        sa.Column("requested_modem", sa.String(length=64), nullable=True),
        sa.Column("modem", sa.String(length=64), nullable=True),
        sa.Column("number", sa.String(length=40), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("reason", sa.String(length=300), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("client_id", sa.Integer(), nullable=True),
        sa.Column("parts", sa.Integer(), nullable=False),
        sa.Column("concat_ref", sa.Integer(), nullable=False),
        sa.Column("part_refs", sa.JSON(), nullable=False),
        sa.Column("submitting_part", sa.Integer(), nullable=True),
        sa.Column("delivered_refs", sa.JSON(), nullable=False),
        sa.Column("status_report", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", utc(), nullable=True),
        sa.Column("created_at", utc(), nullable=False),
        sa.Column("updated_at", utc(), nullable=False),
        sa.Column("sent_at", utc(), nullable=True),
        sa.Column("delivered_at", utc(), nullable=True),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_sms_messages_client_id_clients"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_sms_messages_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_messages")),
    )
    op.create_index("ix_sms_messages_queue", "sms_messages", ["status", "next_attempt_at"])
    op.create_index("ix_sms_messages_created_at", "sms_messages", ["created_at", "id"])
    op.create_index("ix_sms_messages_number", "sms_messages", ["number"])
    op.create_table(
        "sms_inbound_parts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("modem", sa.String(length=64), nullable=False),
        sa.Column("pdu", sa.Text(), nullable=False),
        sa.Column("received_at", utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_inbound_parts")),
    )


def downgrade() -> None:
    op.drop_table("sms_inbound_parts")
    op.drop_index("ix_sms_messages_number", table_name="sms_messages")
    op.drop_index("ix_sms_messages_created_at", table_name="sms_messages")
    op.drop_index("ix_sms_messages_queue", table_name="sms_messages")
    op.drop_table("sms_messages")
