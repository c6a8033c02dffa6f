"""What the directory learns from every finished call.

- an activity on the matched client (its history);
- a missed inbound call opens a callback task for the client's responsible manager (or
  ``[crm] default_manager_extension``); further missed calls from the number count on it;
- a conversation with that number (we call back and they answer, or they call again and
  someone answers) closes the task;
- optionally an unknown caller becomes a new client, a lead.

Each call is followed up once: ``call_followups`` records it in the same transaction as
the work, which is the transaction that stores the finished call (a ``CallFollower`` of
``cti.callstore``). Whatever a crash or a failure leaves undone is picked up by
``catch_up`` at the next start.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import async_sessionmaker

from cti.clients.builtin import DirectoryError, add_lead, lookup_in
from cti.clients.models import Activity, CallbackTask, CallFollowUp, CrmOutbox
from cti.crm_outbox import CallReportOutbox
from cti.db.models import CallRecord
from cti.db.writer import Writer
from cti.directory import Directory, Match
from cti.domain import utcnow
from cti.events import CallbackTaskChanged, DomainEvent

log = logging.getLogger("cti.crm.writeback")

CATCH_UP_BATCH = 500
FOLLOW_UP_STEP = 10  # calls followed up between two turns of the loop
_SUMMARY_FIELDS = (
    "direction",
    "outcome",
    "missed",
    "answered_by",
    "caller_extension",
    "wait_seconds",
    "talk_seconds",
)


@dataclass
class OpenTask:
    """An open callback task as a batch sees it (and changes it)."""

    id: int
    number: str
    assignee_extension: str | None
    missed_calls: int

    def event(self, open: bool = True) -> CallbackTaskChanged:
        return CallbackTaskChanged(
            task_id=self.id,
            number=self.number,
            assignee_extension=self.assignee_extension,
            open=open,
            missed_calls=self.missed_calls,
        )


# The open callback tasks of the batch's numbers, loaded once and kept up to date by it.
OpenTasks = dict[str, list[OpenTask]]


@dataclass
class CallWriteBack:
    sessions: async_sessionmaker
    writer: Writer
    publish: Callable[[DomainEvent], None]
    region: str = "RU"
    suffix_digits: int = 7
    default_extension: str = ""
    create_leads: bool = False
    # Set when an external CRM takes the calls too: they go into its outbox.
    outbox: CallReportOutbox | None = None
    # An external CRM's directory: who a number is when the built-in one does not know.
    external: Directory | None = None
    # Wakes the outbox (with several nodes, on the one that runs it); None: its own wake.
    announce: Callable[[], None] | None = None

    # -- CallFollower: in the transaction that stores the calls -------------------------

    async def prepare(self, calls: list[dict[str, Any]]) -> dict[str, Match | None] | None:
        """The external CRM's answer for each finished call's number: asked before the
        transaction, which waits for nobody. None: no call has finished."""
        finished = _finished(calls)
        if not finished:
            return None
        if self.external is None:
            return {}
        numbers = {
            call["external_number"]
            for call in finished
            if call.get("external_number") and call["direction"] != "internal"
        }
        return {number: await self._ask_external(number) for number in sorted(numbers)}

    def write(
        self, conn: Connection, calls: list[dict[str, Any]], prepared: dict[str, Match | None]
    ) -> Generator[None, None, Callable[[], None]]:
        """Follow up the calls that have just ended, in the order they ended."""
        finished = sorted(_finished(calls), key=lambda c: c["ended_at"])
        events = yield from self._follow_up(conn, calls=finished, external=prepared)
        return lambda: self._announce(events)

    # -- at start-up -------------------------------------------------------------------

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
            prepared = await self.prepare(calls) or {}
            events = await self.writer.run(
                functools.partial(self._follow_up, calls=calls, external=prepared)
            )
            self._announce(events)
            done += len(calls)

    # -- the work ----------------------------------------------------------------------

    def _announce(self, events: list[DomainEvent]) -> None:
        for event in events:
            self.publish(event)
        if self.outbox is not None:
            (self.announce or self.outbox.wake)()

    def _follow_up(
        self, conn: Connection, *, calls: list[dict[str, Any]], external: dict[str, Match | None]
    ) -> Generator[None, None, list[DomainEvent]]:
        """The work, in steps (each finished call asks the directory): see CallFollower."""
        seen = set(conn.scalars(_FOLLOWED_UP, {"ids": [c["id"] for c in calls]}))
        todo = []
        for call in calls:
            if call["id"] not in seen:
                seen.add(call["id"])
                todo.append(call)
        if not todo:
            return []
        open_tasks = _open_tasks(conn, [c.get("external_number") for c in todo])
        now = utcnow()
        events: list[DomainEvent] = []
        activities: list[dict[str, Any]] = []
        for n, call in enumerate(todo, 1):
            events += self._one(conn, call, external, open_tasks, activities)
            if n % FOLLOW_UP_STEP == 0:
                yield
        if activities:
            conn.execute(_ADD_ACTIVITY, activities)
        conn.execute(_FOLLOW_UP, [{"call_id": c["id"], "done_at": now} for c in todo])
        if self.outbox is not None:
            reports = [c for c in todo if c["direction"] != "internal"]
            if reports:
                conn.execute(
                    _REPORT_TO_CRM,
                    [
                        {"call_id": c["id"], "call": c, "attempts": 0, "next_attempt_at": now}
                        for c in reports
                    ],
                )
        return events

    def _one(
        self,
        conn: Connection,
        call: dict[str, Any],
        external: dict[str, Match | None],
        open_tasks: OpenTasks,
        activities: list[dict[str, Any]],
    ) -> list[DomainEvent]:
        number = call.get("external_number")
        if not number or call["direction"] == "internal":
            return []
        # Read in this transaction: it sees the leads the batch has just added.
        builtin = lookup_in(conn, number, self.suffix_digits)
        # The configured CRM says whose client this is (and who calls back); the built-in
        # tables keep the history of their own clients, and answer when the CRM cannot.
        match = external.get(number) or builtin
        if match is None and self.create_leads and call["direction"] == "inbound":
            builtin = match = self._new_lead(conn, call, number)
        client_id = int(builtin.client_id) if builtin is not None else None
        if client_id is not None:  # history lives with built-in clients
            activities.append(
                {
                    "client_id": client_id,
                    "kind": "call",
                    "ref": call["id"],
                    "at": datetime.fromisoformat(call["started_at"]),
                    "summary": {key: call.get(key) for key in _SUMMARY_FIELDS},
                }
            )
        ended = datetime.fromisoformat(call["ended_at"])
        if call["missed"]:
            return [self._open_task(conn, call, number, match, client_id, ended, open_tasks)]
        if call["outcome"] == "answered":
            return _close_tasks(conn, call, number, ended, open_tasks)
        return []

    def _new_lead(self, conn: Connection, call: dict[str, Any], number: str) -> Match | None:
        if not number.startswith("+"):
            return None
        try:
            lead = add_lead(conn, call.get("external_name") or number, number, self.region)
        except DirectoryError as e:
            log.warning("an unknown caller could not become a lead: %s", e)
            return None
        log.info("new lead from an unknown caller", extra={"fields": {"client": lead}})
        return lookup_in(conn, number, self.suffix_digits)

    async def _ask_external(self, number: str) -> Match | None:
        try:
            found = await self.external.lookup(number) if self.external else None
        except Exception as e:  # unreachable CRM: the task goes to the default assignee
            log.warning("the CRM could not say who %s is: %s", number, e)
            return None
        return found if isinstance(found, Match) else None

    def _open_task(
        self,
        conn: Connection,
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
            conn.execute(_COUNT_MISSED, {"task": task.id, "missed": task.missed_calls})
            return task.event()
        manager = match.manager if match is not None else None
        assignee = (manager.extension if manager else None) or self.default_extension or None
        task_id = conn.execute(
            _OPEN_TASK,
            {
                "number": number,
                "client_id": client_id,
                "assignee_extension": assignee,
                "missed_call_id": call["id"],
                "created_at": ended,
                "missed_calls": 1,
            },
        ).scalar_one()
        task = OpenTask(task_id, number, assignee, 1)
        open_tasks.setdefault(number, []).append(task)
        return task.event()


# Built once: a statement built anew is keyed and looked up in the compiled cache again,
# which costs more than running it (these run in every batch of the call store).
_FOLLOWED_UP = select(CallFollowUp.call_id).where(
    CallFollowUp.call_id.in_(bindparam("ids", expanding=True))
)
_FOLLOW_UP = insert(CallFollowUp)
_ADD_ACTIVITY = insert(Activity)
_REPORT_TO_CRM = insert(CrmOutbox)
_OPEN_TASKS = (
    select(
        CallbackTask.id,
        CallbackTask.number,
        CallbackTask.assignee_extension,
        CallbackTask.missed_calls,
    )
    .where(
        CallbackTask.number.in_(bindparam("numbers", expanding=True)),
        CallbackTask.closed_at.is_(None),
    )
    .order_by(CallbackTask.created_at, CallbackTask.id)
)
_OPEN_TASK = insert(CallbackTask).returning(CallbackTask.id)
_COUNT_MISSED = (
    update(CallbackTask)
    .where(CallbackTask.id == bindparam("task"))
    .values(missed_calls=bindparam("missed"))
)
_CLOSE_TASKS = (
    update(CallbackTask)
    .where(CallbackTask.id.in_(bindparam("tasks", expanding=True)))
    .values(
        closed_at=bindparam("at"),
        closed_by_call_id=bindparam("call"),
        closed_reason=bindparam("reason"),
    )
)


def _finished(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in calls if c.get("ended_at") and c.get("direction")]


def _close_tasks(
    conn: Connection, call: dict[str, Any], number: str, ended: datetime, open_tasks: OpenTasks
) -> list[DomainEvent]:
    tasks = open_tasks.pop(number, [])
    if not tasks:
        return []
    reason = "called_back" if call["direction"] == "outbound" else "called_again"
    conn.execute(
        _CLOSE_TASKS,
        {"tasks": [t.id for t in tasks], "at": ended, "call": call["id"], "reason": reason},
    )
    return [task.event(open=False) for task in tasks]


def _open_tasks(conn: Connection, numbers: list[str | None]) -> OpenTasks:
    wanted = sorted({n for n in numbers if n})
    found: OpenTasks = {}
    if wanted:
        for row in conn.execute(_OPEN_TASKS, {"numbers": wanted}):
            found.setdefault(row.number, []).append(OpenTask(*row))
    return found


def task_event(task: CallbackTask) -> CallbackTaskChanged:
    return CallbackTaskChanged(
        task_id=task.id,
        number=task.number,
        assignee_extension=task.assignee_extension,
        open=task.closed_at is None,
        missed_calls=task.missed_calls,
    )
