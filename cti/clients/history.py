"""What a screen pop shows besides the name: recent interactions and open callback tasks.

A built-in client's history is its activities (calls and SMS, from all its numbers); for
an external CRM's client or an unknown caller, the calls with that number stand in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Select, bindparam, or_, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from cti.cards import History
from cti.clients.models import Activity, CallbackTask
from cti.db.models import CallRecord
from cti.db.reads import LoopReader

HISTORY_ITEMS = 5
TASK_ITEMS = 5
_CALL_FIELDS = ("direction", "outcome", "missed", "answered_by", "caller_extension")

# Built once (see cti.db.reads): these run for every identified call.
_CLIENT_HISTORY = (
    select(Activity.kind, Activity.at, Activity.ref, Activity.summary)
    .where(Activity.client_id == bindparam("client"), Activity.ref != bindparam("call"))
    .order_by(Activity.at.desc(), Activity.id.desc())
    .limit(HISTORY_ITEMS)
)
_NUMBER_HISTORY = (  # the number's own calls: CallFilter(number=...) of the call log
    select(
        CallRecord.id,
        CallRecord.started_at,
        *(getattr(CallRecord, name) for name in _CALL_FIELDS),
    )
    .where(CallRecord.external_number == bindparam("number"), CallRecord.id != bindparam("call"))
    .order_by(CallRecord.started_at.desc(), CallRecord.id.desc())
    .limit(HISTORY_ITEMS)
)
_TASK_COLUMNS = (
    select(
        CallbackTask.id,
        CallbackTask.number,
        CallbackTask.missed_calls,
        CallbackTask.assignee_extension,
        CallbackTask.created_at,
    )
    .where(CallbackTask.closed_at.is_(None))
    .order_by(CallbackTask.created_at.desc())
    .limit(TASK_ITEMS)
)
# By the number alone where no client is known: its index answers, where the OR with
# the client (whose id has none) would read every task.
_NUMBER_TASKS = _TASK_COLUMNS.where(CallbackTask.number == bindparam("number"))
_CLIENT_TASKS = _TASK_COLUMNS.where(
    or_(CallbackTask.number == bindparam("number"), CallbackTask.client_id == bindparam("client"))
)

Items = Callable[[list[Any]], list[dict[str, Any]]]


class PopHistory:
    """Called once a card knows who calls; its reads go through ``LoopReader``, not a
    session: they are on every call's path (bench/screenpop.py). On SQLite ``now``
    reads at once, with no task."""

    def __init__(self, sessions: async_sessionmaker, *, builtin: bool) -> None:
        self.reader = LoopReader(sessions.kw["bind"])
        self.builtin = builtin  # the directory is ours: its client ids are our clients

    async def __call__(
        self, call_id: str, number: str | None, match: dict[str, Any] | None
    ) -> History:
        (history, items), tasks, params = self._plan(call_id, number, match)
        return (
            items(await self.reader.all(history, params) if history is not None else []),
            _task_items(await self.reader.all(tasks, params) if tasks is not None else []),
        )

    @property
    def at_once(self) -> bool:
        """Whether ``now`` can read (SQLite)."""
        return self.reader.at_once

    def now(self, call_id: str, number: str | None, match: dict[str, Any] | None) -> History:
        """The same, read at once (``at_once`` only)."""
        (history, items), tasks, params = self._plan(call_id, number, match)
        return (
            items(self.reader.all_now(history, params) if history is not None else []),
            _task_items(self.reader.all_now(tasks, params) if tasks is not None else []),
        )

    def _plan(
        self, call_id: str, number: str | None, match: dict[str, Any] | None
    ) -> tuple[tuple[Select | None, Items], Select | None, dict[str, Any]]:
        """The history query with what makes its rows items, the open-task query (None:
        nothing to ask), and their parameters."""
        client_id = _client_id(match) if self.builtin else None
        params = {"call": call_id, "client": client_id, "number": number}
        if client_id is not None:
            history = (_CLIENT_HISTORY, _activity_items)
        else:
            history = (_NUMBER_HISTORY if number else None, _call_items)
        if client_id is not None:
            tasks = _CLIENT_TASKS
        else:
            tasks = _NUMBER_TASKS if number else None
        return history, tasks, params

    async def close(self) -> None:
        await self.reader.close()


def _activity_items(rows: list[Any]) -> list[dict[str, Any]]:
    return [
        {"kind": kind, "at": at.isoformat(), "ref": ref, **summary}
        for kind, at, ref, summary in rows
    ]


def _call_items(rows: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "kind": "call",
            "at": started_at.isoformat(),
            "ref": call_id,
            **dict(zip(_CALL_FIELDS, fields, strict=True)),
        }
        for call_id, started_at, *fields in rows
    ]


def _task_items(rows: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "id": task_id,
            "number": task_number,
            "missed_calls": missed_calls,
            "assignee_extension": assignee,
            "created_at": created_at.isoformat(),
        }
        for task_id, task_number, missed_calls, assignee, created_at in rows
    ]


def _client_id(match: dict[str, Any] | None) -> int | None:
    if match is None:
        return None
    try:
        return int(match["client_id"])
    except (KeyError, TypeError, ValueError):
        return None
