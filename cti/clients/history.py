"""What a screen pop shows besides the name: recent interactions and open callback tasks.

A built-in client's history is its activities (calls and SMS, from all its numbers); for
an external CRM's client or an unknown caller, the calls with that number stand in.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from cti.callstore import CallFilter, find_calls
from cti.clients.models import Activity, CallbackTask

HISTORY_ITEMS = 5
TASK_ITEMS = 5
_CALL_FIELDS = ("direction", "outcome", "missed", "answered_by", "caller_extension")


class PopHistory:
    def __init__(self, sessions: async_sessionmaker, *, builtin: bool) -> None:
        self.sessions = sessions
        self.builtin = builtin  # the directory is ours: its client ids are our clients

    async def __call__(
        self, call_id: str, number: str | None, match: dict[str, Any] | None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        client_id = _client_id(match) if self.builtin else None
        async with self.sessions() as session:
            if client_id is not None:
                rows = await session.scalars(
                    select(Activity)
                    .where(Activity.client_id == client_id, Activity.ref != call_id)
                    .order_by(Activity.at.desc(), Activity.id.desc())
                    .limit(HISTORY_ITEMS)
                )
                history = [
                    {"kind": a.kind, "at": a.at.isoformat(), "ref": a.ref, **a.summary}
                    for a in rows
                ]
            elif number:
                calls = await find_calls(
                    session, CallFilter(number=number), limit=HISTORY_ITEMS + 1
                )
                history = [
                    {
                        "kind": "call",
                        "at": c["started_at"],
                        "ref": c["id"],
                        **{k: c.get(k) for k in _CALL_FIELDS},
                    }
                    for c in calls
                    if c["id"] != call_id
                ][:HISTORY_ITEMS]
            else:
                history = []
            wanted = []
            if number:
                wanted.append(CallbackTask.number == number)
            if client_id is not None:
                wanted.append(CallbackTask.client_id == client_id)
            tasks = []
            if wanted:
                rows = await session.scalars(
                    select(CallbackTask)
                    .where(or_(*wanted), CallbackTask.closed_at.is_(None))
                    .order_by(CallbackTask.created_at.desc())
                    .limit(TASK_ITEMS)
                )
                tasks = [
                    {
                        "id": t.id,
                        "number": t.number,
                        "missed_calls": t.missed_calls,
                        "assignee_extension": t.assignee_extension,
                        "created_at": t.created_at.isoformat(),
                    }
                    for t in rows
                ]
        return history, tasks


def _client_id(match: dict[str, Any] | None) -> int | None:
    if match is None:
        return None
    try:
        return int(match["client_id"])
    except (KeyError, TypeError, ValueError):
        return None
