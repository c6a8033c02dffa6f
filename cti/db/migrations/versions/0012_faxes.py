"""Faxes (received and sent) and the audit of who opened them.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cti.db.models

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    utc = cti.db.models.UTCDateTime
    op.create_table(
        "faxes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("direction", sa.String(length=3), nullable=False),
        sa.Column("call_id", sa.String(length=100), nullable=True),
        sa.Column("number", sa.String(length=40), nullable=True),
        sa.Column("remote_station", sa.String(length=40), nullable=True),
        sa.Column("pages", sa.Integer(), nullable=True),
        sa.Column("resolution", sa.String(length=20), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("error", sa.String(length=300), nullable=True),
        sa.Column("client_id", sa.Integer(), nullable=True),
        sa.Column("client_name", sa.String(length=200), nullable=True),
        sa.Column("search", sa.String(length=400), nullable=False, server_default=""),
        sa.Column("assignee_extension", sa.String(length=10), nullable=True),
        sa.Column("tiff", sa.String(length=500), nullable=True),
        sa.Column("pdf", sa.String(length=500), nullable=True),
        sa.Column("thumbnail", sa.String(length=500), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("dials", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("tries", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_at", utc(), nullable=True),
        sa.Column("kill_at", utc(), nullable=True),
        sa.Column("at", utc(), nullable=False),
        sa.Column("created_at", utc(), nullable=False),
        sa.Column("deleted_at", utc(), nullable=True),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_faxes_call_id_calls"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_faxes")),
    )
    op.create_index("ix_faxes_call_id", "faxes", ["call_id"], unique=True)
    op.create_index("ix_faxes_at", "faxes", ["at"])
    op.create_index("ix_faxes_assignee", "faxes", ["assignee_extension", "at"])
    op.create_index("ix_faxes_due", "faxes", ["status", "next_at"])
    op.create_table(
        "fax_views",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fax_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("at", utc(), nullable=False),
        sa.Column("what", sa.String(length=10), nullable=False),
        sa.Column("remote", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["fax_id"], ["faxes.id"], name=op.f("fk_fax_views_fax_id_faxes"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_fax_views_user_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fax_views")),
    )
    op.create_index("ix_fax_views_fax_id", "fax_views", ["fax_id", "at"])


def downgrade() -> None:
    op.drop_table("fax_views")
    op.drop_table("faxes")
