"""Received SMS parts as text: the modem package reads PDUs, the core keeps text.

Parts stored before this wait for the rest of their message as PDUs. They stay as they
are (``pdu``, now nullable; the other columns empty) and are read into the new columns
when their modem next comes up (``SmsInbox.reread``, with the modem package's reader):
a migration that decoded them here would need the PDU codec, which the core does not
import. Downgrading drops the parts that have no PDU (only parts of messages still
incomplete): the version before cannot read anything else.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cti.db.models

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    utc = cti.db.models.UTCDateTime
    with op.batch_alter_table("sms_inbound_parts") as batch:
        batch.add_column(sa.Column("sender", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("text", sa.Text(), nullable=True))
        batch.add_column(sa.Column("sent_at", utc(), nullable=True))
        batch.add_column(sa.Column("concat_ref", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("concat_seq", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("concat_total", sa.Integer(), nullable=True))
        batch.alter_column("pdu", existing_type=sa.Text(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM sms_inbound_parts WHERE pdu IS NULL")
    with op.batch_alter_table("sms_inbound_parts") as batch:
        batch.alter_column("pdu", existing_type=sa.Text(), nullable=False)
        for column in ("concat_total", "concat_seq", "concat_ref", "sent_at", "text", "sender"):
            batch.drop_column(column)
