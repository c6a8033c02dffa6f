"""Hardening: session-bound tokens, the audit log, SMS routing, the write probe.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cti.db.models

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    utc = cti.db.models.UTCDateTime
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(
            sa.Column("is_session", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("session_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_api_tokens_session_id_api_tokens"),
            "api_tokens",
            ["session_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch.create_index("ix_api_tokens_session_id", ["session_id"])
    # Sign-ins so far: the only tokens that were given an expiry.
    op.execute(
        "UPDATE api_tokens SET is_session = true "
        "WHERE label = 'web session' AND expires_at IS NOT NULL"
    )
    with op.batch_alter_table("sms_messages") as batch:
        batch.add_column(sa.Column("routed_extension", sa.String(length=10), nullable=True))
    # Messages received so far reached the client's manager's screen: they keep seeing them.
    op.execute(
        "UPDATE sms_messages SET routed_extension = ("
        "SELECT users.extension FROM clients JOIN users ON users.id = clients.manager_id "
        "WHERE clients.id = sms_messages.client_id) "
        "WHERE direction = 'in' AND client_id IS NOT NULL"
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", utc(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("target", sa.String(length=100), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("remote", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_audit_log_user_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_target", "audit_log", ["target", "at"])
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_table(
        "health_probe",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("checked_at", utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_health_probe")),
    )


def downgrade() -> None:
    op.drop_table("health_probe")
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_index("ix_audit_log_target", table_name="audit_log")
    op.drop_table("audit_log")
    with op.batch_alter_table("sms_messages") as batch:
        batch.drop_column("routed_extension")
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_index("ix_api_tokens_session_id")
        batch.drop_constraint(op.f("fk_api_tokens_session_id_api_tokens"), type_="foreignkey")
        batch.drop_column("session_id")
        batch.drop_column("is_session")
