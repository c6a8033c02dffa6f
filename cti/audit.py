"""The audit log: changes that decide who sees what or who gets which work.

Each entry says who (the user, or ``cti`` for the command line), when, from where, what
was changed and what it was before. Entries are written in the same transaction as the
change, so there is never a change without its entry.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from cti.auth import Principal
from cti.db.models import AuditEntry
from cti.domain import utcnow


def record(
    session: AsyncSession,
    who: Principal | None,
    action: str,
    target: str,
    details: dict[str, Any],
    remote: str | None = None,
) -> None:
    """Add an entry (not committed: it goes with the change)."""
    session.add(
        AuditEntry(
            at=utcnow(),
            user_id=who.user_id if who else None,
            username=who.username if who else "cti",
            action=action,
            target=target,
            details=details,
            remote=remote,
        )
    )
