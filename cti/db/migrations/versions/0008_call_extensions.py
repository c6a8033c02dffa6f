"""Every extension each call involves, and a number's calls in order, for the call log
at any size.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23

"The calls of extension X, newest first" used to test an OR of a leg lookup and two
columns on every call from the newest down: fine for a busy extension, a walk through
the whole table (0.5-1 s at 1,000,000 calls) for one with few calls or none
(bench/calllog.py). One row per (call, extension), indexed by extension and start time,
makes that page a range of one index. Back-filled with what ``Call.extensions()`` counts:
the legs, the caller, who answered and who transferred the call.

The number index gains the start time and id, so one number's calls come newest first
from it too: an operator's calls with a client who called 5,000 times no longer fetch and
sort all 5,000 (128 ms p99 on SQLite before).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cti.db.models

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Who transferred a call lives only in its details (a JSON list of {"from", "to", ...});
# usually they also rang or answered it, hence "do nothing" for a row already there.
ADD_TRANSFERRED_BY = {
    "sqlite": (
        "INSERT INTO call_extensions (call_id, extension, started_at)"
        " SELECT c.id, json_extract(t.value, '$.from'), c.started_at"
        " FROM calls c, json_each(c.details, '$.transfers') t"
        " WHERE coalesce(json_extract(t.value, '$.from'), '') <> ''"
        " ON CONFLICT DO NOTHING"
    ),
    "postgresql": (
        "INSERT INTO call_extensions (call_id, extension, started_at)"
        " SELECT c.id, t ->> 'from', c.started_at"
        " FROM calls c CROSS JOIN LATERAL json_array_elements(c.details -> 'transfers') t"
        " WHERE coalesce(t ->> 'from', '') <> ''"
        " ON CONFLICT DO NOTHING"
    ),
}


def upgrade() -> None:
    op.create_table(
        "call_extensions",
        sa.Column("call_id", sa.String(length=100), nullable=False),
        sa.Column("extension", sa.String(length=10), nullable=False),
        sa.Column("started_at", cti.db.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["call_id"],
            ["calls.id"],
            name=op.f("fk_call_extensions_call_id_calls"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("call_id", "extension", name=op.f("pk_call_extensions")),
    )
    # UNION, not UNION ALL: an extension that rang and answered is one row.
    op.execute(
        "INSERT INTO call_extensions (call_id, extension, started_at)"
        " SELECT l.call_id, l.extension, c.started_at"
        " FROM call_legs l JOIN calls c ON c.id = l.call_id"
        " UNION SELECT id, caller_extension, started_at FROM calls"
        " WHERE coalesce(caller_extension, '') <> ''"
        " UNION SELECT id, answered_by, started_at FROM calls"
        " WHERE coalesce(answered_by, '') <> ''"
    )
    op.execute(ADD_TRANSFERRED_BY[op.get_bind().dialect.name])
    # Built after the back-fill: one sort instead of a million index insertions.
    op.create_index(
        "ix_call_extensions_extension",
        "call_extensions",
        ["extension", "started_at", "call_id"],
    )
    op.drop_index("ix_calls_external_number", table_name="calls")
    op.create_index("ix_calls_external_number", "calls", ["external_number", "started_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_calls_external_number", table_name="calls")
    op.create_index("ix_calls_external_number", "calls", ["external_number"])
    op.drop_index("ix_call_extensions_extension", table_name="call_extensions")
    op.drop_table("call_extensions")
