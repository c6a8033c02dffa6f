"""What the directory learns from every finished call.

- an activity on the matched client (its history);
- a missed inbound call opens a callback task for the client's responsible manager (or
  ``[crm] default_manager_extension``); further missed calls from the number count on it;
- a conversation with that number (we call back and they answer, or they call again and
  someone answers) closes the task;
- optionally an unknown caller becomes a new client, a lead.

Each call is followed up once: ``call_followups`` records it in the same transaction as
the work. Follow-ups run after the call itself is stored; whatever a crash leaves undone
is picked up by ``catch_up`` at the next start.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cti.clients.builtin import ClientIn, PhoneIn, lookup_in, save_client
from cti.clients.models import Activity, CallbackTask, CallFollowUp
from cti.crm_outbox import CallReportOutbox, enqueue
from cti.db.models import CallRecord
from cti.directory import Directory, Found, Match
from cti.domain import utcnow
from cti.events import CallbackTaskChanged, DomainEvent

log = logging.getLogger("cti.crm.writeback")

CATCH_UP_BATCH = 500


@dataclass
class CallWriteBack:
    sessions: async_sessionmaker
    publish: Callable[[DomainEvent], None]
    region: str = "RU"
    suffix_digits: int = 7
    default_extension: str = ""
    create_leads: bool = False
    # Set when an external CRM takes the calls too: they go into its outbox.
    outbox: CallReportOutbox | None = None
    # An external CRM's directory: who a number is when the built-in one does not know.
    external: Directory | None = None
    # The built-in directory's own lookup (SqlDirectory.lookup: on SQLite a read on the
    # loop's thread), instead of a query in the batch's transaction for every call.
    builtin_lookup: Callable[[str], Awaitable[Found]] | None = None

    async def after_write(self, calls: list[dict[str, Any]]) -> None:
        """CallStore hook: follow up the calls that have just ended."""
        ended = [c for c in calls if c.get("ended_at") and c.get("direction")]
        if ended:
            await self._follow_up(sorted(ended, key=lambda c: c["ended_at"]))

    async def catch_up(self) -> int:
        """Follow up finished calls that a crash left without one; returns how many."""
        done = 0
        while True:
            async with self.sessions() as session:
                rows = await session.scalars(
                    select(CallRecord.details)
                    .outerjoin(CallFollowUp, CallFollowUp.call_id == CallRecord.id)
                    .where(CallRecord.in_progress.is_(False), CallFollowUp.call_id.is_(None))
                    .order_by(CallRecord.ended_at)
                    .limit(CATCH_UP_BATCH)
                )
                calls = list(rows)
            if not calls:
                return done
            await self._follow_up(calls)
            done += len(calls)

    async def _follow_up(self, calls: list[dict[str, Any]]) -> None:
        events: list[DomainEvent] = []
        async with self.sessions() as session:
            seen = set(
                await session.scalars(
                    select(CallFollowUp.call_id).where(
                        CallFollowUp.call_id.in_([c["id"] for c in calls])
                    )
                )
            )
            todo = []
            for call in calls:
                if call["id"] not in seen:
                    seen.add(call["id"])
                    todo.append(call)
            open_tasks = await _open_tasks(session, [c.get("external_number") for c in todo])
            leads: dict[str, Match] = {}  # created by this batch: not committed yet
            for call in todo:
                events += await self._one(session, call, open_tasks, leads)
                session.add(CallFollowUp(call_id=call["id"], done_at=utcnow()))
                if self.outbox is not None and call["direction"] != "internal":
                    enqueue(session, call, utcnow())
            await session.commit()
        for event in events:
            self.publish(event)
        if self.outbox is not None:
            self.outbox.wake()

    async def _one(
        self,
        session: AsyncSession,
        call: dict[str, Any],
        open_tasks: OpenTasks,
        leads: dict[str, Match],
    ) -> list[DomainEvent]:
        number = call.get("external_number")
        if not number or call["direction"] == "internal":
            return []
        builtin = await self._builtin(session, number, leads)
        # The configured CRM says whose client this is (and who calls back); the built-in
        # tables keep the history of their own clients, and answer when the CRM cannot.
        match = (await self._ask_external(number) if self.external else None) or builtin
        ended = datetime.fromisoformat(call["ended_at"])
        if match is None and self.create_leads and call["direction"] == "inbound":
            if number.startswith("+"):
                lead = await save_client(
                    session,
                    ClientIn(
                        call.get("external_name") or number,
                        kind="person",
                        phones=[PhoneIn(number)],
                        is_lead=True,
                    ),
                    self.region,
                )
                match = builtin = await lookup_in(session, number, self.suffix_digits)
                if builtin is not None:
                    leads[number] = builtin
                log.info("new lead from an unknown caller", extra={"fields": {"client": lead.id}})
        client_id = int(builtin.client_id) if builtin is not None else None
        if client_id is not None:  # history lives with built-in clients
            session.add(
                Activity(
                    client_id=client_id,
                    kind="call",
                    ref=call["id"],
                    at=datetime.fromisoformat(call["started_at"]),
                    summary={
                        key: call.get(key)
                        for key in (
                            "direction",
                            "outcome",
                            "missed",
                            "answered_by",
                            "caller_extension",
                            "wait_seconds",
                            "talk_seconds",
                        )
                    },
                )
            )
        if call["missed"]:
            return [
                await self._open_task(session, call, number, match, client_id, ended, open_tasks)
            ]
        if call["outcome"] == "answered":
            return self._close_tasks(call, number, ended, open_tasks)
        return []

    async def _builtin(
        self, session: AsyncSession, number: str, leads: dict[str, Match]
    ) -> Match | None:
        """The built-in client of ``number``, as this batch's transaction sees it."""
        if number in leads:
            return leads[number]
        if self.builtin_lookup is not None and not (leads and not number.startswith("+")):
            found = await self.builtin_lookup(number)
            return found if isinstance(found, Match) else None
        # What this batch added is written at the commit, in one statement a table,
        # rather than before each lookup (a lookup reads no row but the leads, flushed).
        with session.no_autoflush:
            return await lookup_in(session, number, self.suffix_digits)

    async def _ask_external(self, number: str) -> Match | None:
        try:
            return await self.external.lookup(number) if self.external else None
        except Exception as e:  # unreachable CRM: the task goes to the default assignee
            log.warning("the CRM could not say who %s is: %s", number, e)
            return None

    async def _open_task(
        self,
        session: AsyncSession,
        call: dict[str, Any],
        number: str,
        match: Match | None,
        client_id: int | None,  # a built-in client's (an external CRM's clients have none)
        ended: datetime,
        open_tasks: OpenTasks,
    ) -> DomainEvent:
        task = next(iter(open_tasks.get(number, ())), None)
        if task is not None:
            task.missed_calls += 1
            return task_event(task)
        manager = match.manager if match is not None else None
        assignee = (manager.extension if manager else None) or self.default_extension or None
        task = CallbackTask(
            number=number,
            client_id=client_id,
            assignee_extension=assignee,
            missed_call_id=call["id"],
            created_at=ended,
            missed_calls=1,
        )
        session.add(task)
        await session.flush()  # its id, for the event
        open_tasks.setdefault(number, []).append(task)
        return task_event(task)

    def _close_tasks(
        self, call: dict[str, Any], number: str, ended: datetime, open_tasks: OpenTasks
    ) -> list[DomainEvent]:
        tasks = open_tasks.pop(number, [])
        reason = "called_back" if call["direction"] == "outbound" else "called_again"
        for task in tasks:
            task.closed_at, task.closed_by_call_id, task.closed_reason = ended, call["id"], reason
        return [task_event(task) for task in tasks]


# The open callback tasks of the batch's numbers, loaded once and kept up to date by it.
OpenTasks = dict[str, list[CallbackTask]]


async def _open_tasks(session: AsyncSession, numbers: list[str | None]) -> OpenTasks:
    wanted = sorted({n for n in numbers if n})
    found: OpenTasks = {}
    if wanted:
        rows = await session.scalars(
            select(CallbackTask)
            .where(CallbackTask.number.in_(wanted), CallbackTask.closed_at.is_(None))
            .order_by(CallbackTask.created_at, CallbackTask.id)
        )
        for task in rows:
            found.setdefault(task.number, []).append(task)
    return found


def task_event(task: CallbackTask) -> CallbackTaskChanged:
    return CallbackTaskChanged(
        task_id=task.id,
        number=task.number,
        assignee_extension=task.assignee_extension,
        open=task.closed_at is None,
        missed_calls=task.missed_calls,
    )
