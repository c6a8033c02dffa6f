"""Client directory, activities and callback tasks

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cti.db.models

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "clients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("manager_id", sa.Integer(), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("notes", sa.String(length=2000), nullable=False),
        sa.Column("is_lead", sa.Boolean(), nullable=False),
        sa.Column("search_text", sa.String(length=4000), nullable=False),
        sa.Column("created_at", cti.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", cti.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["manager_id"],
            ["users.id"],
            name=op.f("fk_clients_manager_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clients")),
    )
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_clients_manager_id"), ["manager_id"], unique=False)
        batch_op.create_index("ix_clients_name", ["name"], unique=False)

    op.create_table(
        "call_followups",
        sa.Column("call_id", sa.String(length=100), nullable=False),
        sa.Column("done_at", cti.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("call_id", name=op.f("pk_call_followups")),
    )
    op.create_table(
        "activities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("ref", sa.String(length=100), nullable=False),
        sa.Column("at", cti.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_activities_client_id_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activities")),
        sa.UniqueConstraint("kind", "ref", "client_id", name="uq_activities_kind_ref_client"),
    )
    with op.batch_alter_table("activities", schema=None) as batch_op:
        batch_op.create_index("ix_activities_client_at", ["client_id", "at"], unique=False)

    op.create_table(
        "callback_tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=40), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=True),
        sa.Column("assignee_extension", sa.String(length=10), nullable=True),
        sa.Column("missed_call_id", sa.String(length=100), nullable=False),
        sa.Column("missed_calls", sa.Integer(), nullable=False),
        sa.Column("created_at", cti.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("closed_at", cti.db.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("closed_by_call_id", sa.String(length=100), nullable=True),
        sa.Column("closed_reason", sa.String(length=20), nullable=True),
        sa.Column("closed_by_user_id", sa.Integer(), nullable=True),
        sa.Column("comment", sa.String(length=2000), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_callback_tasks_client_id_clients"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["closed_by_user_id"],
            ["users.id"],
            name=op.f("fk_callback_tasks_closed_by_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_tasks")),
        sa.UniqueConstraint("missed_call_id", name=op.f("uq_callback_tasks_missed_call_id")),
    )
    with op.batch_alter_table("callback_tasks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_callback_tasks_assignee", ["assignee_extension", "closed_at"], unique=False
        )
        batch_op.create_index(
            "ix_callback_tasks_open_number", ["number", "closed_at"], unique=False
        )

    op.create_table(
        "contacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("position", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_contacts_client_id_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contacts")),
    )
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_contacts_client_id"), ["client_id"], unique=False)

    op.create_table(
        "phones",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("number", sa.String(length=20), nullable=False),
        sa.Column("extension", sa.String(length=10), nullable=True),
        sa.Column("label", sa.String(length=40), nullable=False),
        sa.Column("reversed_digits", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_phones_client_id_clients"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_phones_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_phones")),
    )
    with op.batch_alter_table("phones", schema=None) as batch_op:
        batch_op.create_index("ix_phones_client_id", ["client_id"], unique=False)
        batch_op.create_index("ix_phones_contact_id", ["contact_id"], unique=False)
        batch_op.create_index("ix_phones_number", ["number"], unique=False)
        batch_op.create_index("ix_phones_reversed_digits", ["reversed_digits"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("phones", schema=None) as batch_op:
        batch_op.drop_index("ix_phones_reversed_digits")
        batch_op.drop_index("ix_phones_number")
        batch_op.drop_index("ix_phones_contact_id")
        batch_op.drop_index("ix_phones_client_id")

    op.drop_table("phones")
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contacts_client_id"))

    op.drop_table("contacts")
    with op.batch_alter_table("callback_tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_callback_tasks_open_number")
        batch_op.drop_index("ix_callback_tasks_assignee")

    op.drop_table("callback_tasks")
    with op.batch_alter_table("activities", schema=None) as batch_op:
        batch_op.drop_index("ix_activities_client_at")

    op.drop_table("activities")
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_index("ix_clients_name")
        batch_op.drop_index(batch_op.f("ix_clients_manager_id"))

    op.drop_table("call_followups")
    op.drop_table("clients")
