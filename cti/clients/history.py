"""What a screen pop shows besides the name: recent interactions and open callback tasks.

A built-in client's history is its activities (calls and SMS, from all its numbers); for
an external CRM's client or an unknown caller, the calls with that number stand in.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from cti.callstore import CallFilter, calls_query
from cti.clients.models import Activity, CallbackTask
from cti.db.reads import LoopReader

HISTORY_ITEMS = 5
TASK_ITEMS = 5
_CALL_FIELDS = ("direction", "outcome", "missed", "answered_by", "caller_extension")


class PopHistory:
    """Called once a card knows who calls; its reads go through ``LoopReader``, not a
    session: they are on every call's path (bench/screenpop.py)."""

    def __init__(self, sessions: async_sessionmaker, *, builtin: bool) -> None:
        self.reader = LoopReader(sessions.kw["bind"])
        self.builtin = builtin  # the directory is ours: its client ids are our clients

    async def __call__(
        self, call_id: str, number: str | None, match: dict[str, Any] | None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        client_id = _client_id(match) if self.builtin else None
        history: list[dict[str, Any]] = []
        if client_id is not None:
            rows = await self.reader.all(
                select(Activity.kind, Activity.at, Activity.ref, Activity.summary)
                .where(Activity.client_id == client_id, Activity.ref != call_id)
                .order_by(Activity.at.desc(), Activity.id.desc())
                .limit(HISTORY_ITEMS)
            )
            history = [
                {"kind": kind, "at": at.isoformat(), "ref": ref, **summary}
                for kind, at, ref, summary in rows
            ]
        elif number:
            query = calls_query(CallFilter(number=number), limit=HISTORY_ITEMS + 1)
            calls = await self.reader.scalars(query) if query is not None else []
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
        wanted = []
        if number:
            wanted.append(CallbackTask.number == number)
        if client_id is not None:
            wanted.append(CallbackTask.client_id == client_id)
        tasks = []
        if wanted:
            rows = await self.reader.all(
                select(
                    CallbackTask.id,
                    CallbackTask.number,
                    CallbackTask.missed_calls,
                    CallbackTask.assignee_extension,
                    CallbackTask.created_at,
                )
                .where(or_(*wanted), CallbackTask.closed_at.is_(None))
                .order_by(CallbackTask.created_at.desc())
                .limit(TASK_ITEMS)
            )
            tasks = [
                {
                    "id": task_id,
                    "number": task_number,
                    "missed_calls": missed_calls,
                    "assignee_extension": assignee,
                    "created_at": created_at.isoformat(),
                }
                for task_id, task_number, missed_calls, assignee, created_at in rows
            ]
        return history, tasks

    def close(self) -> None:
        self.reader.close()


def _client_id(match: dict[str, Any] | None) -> int | None:
    if match is None:
        return None
    try:
        return int(match["client_id"])
    except (KeyError, TypeError, ValueError):
        return None
