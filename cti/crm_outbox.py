"""Writing finished calls into an external CRM, durably.

The call follow-up puts each external call in ``crm_outbox`` in the same transaction
that marks it followed up; this worker registers it with the CRM, stores the CRM's id
before finishing it (so a retry after a crash finishes the same record instead of
registering a second one), and retries failures with exponential backoff. Only a refusal
that retrying cannot fix (bad credentials, a missing user mapping) ends an entry unwritten,
and its reason is kept.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cti.backoff import delay_for
from cti.clients.models import CrmOutbox
from cti.domain import utcnow
from cti.tasks import TaskMonitor

log = logging.getLogger("cti.crm.outbox")

BATCH = 20
IDLE_SECONDS = 30.0  # look for due retries this often even when nothing new arrives
MAX_BACKOFF_SECONDS = 3600.0


class CallReporter(Protocol):
    last_skip_reason: str | None

    async def call_started(self, call: dict[str, Any]) -> str | None: ...

    async def call_finished(self, call: dict[str, Any], call_id: str) -> None: ...

    async def close(self) -> None: ...


class CallReportOutbox:
    def __init__(
        self,
        sessions: async_sessionmaker,
        reporter: CallReporter,
        *,
        retry_base_seconds: float = 5.0,
        clock: Callable[[], datetime] = utcnow,
        tasks: TaskMonitor | None = None,
    ) -> None:
        self.sessions = sessions
        self.reporter = reporter
        self.tasks = tasks or TaskMonitor()
        self.retry_base = retry_base_seconds
        self.clock = clock
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sending = asyncio.Lock()  # one round at a time: an entry is sent once

    def start(self) -> None:
        self._task = self.tasks.spawn(self._run(), "crm-outbox")

    def wake(self) -> None:
        self._wakeup.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                while await self.send_due():
                    pass
            except Exception:
                log.exception("the CRM outbox failed a round; it tries again")
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), IDLE_SECONDS)
            except TimeoutError:
                pass

    async def send_due(self) -> int:
        """Send the entries that are due (at most BATCH); returns how many were tried.
        Each is claimed with its row locked (``FOR UPDATE SKIP LOCKED``, on PostgreSQL):
        two nodes never send one entry, whatever runs where."""
        tried = 0
        async with self._sending:
            while tried < BATCH:
                async with self.sessions() as session:
                    entry = await session.scalar(
                        select(CrmOutbox)
                        .where(
                            CrmOutbox.done_at.is_(None), CrmOutbox.next_attempt_at <= self.clock()
                        )
                        .order_by(CrmOutbox.next_attempt_at)
                        .limit(1)
                        .with_for_update(skip_locked=True)
                    )
                    if entry is None:
                        break
                    await self._send(session, entry)
                    await session.commit()  # each entry's progress is kept on its own
                tried += 1
        return tried

    async def _send(self, session: AsyncSession, entry: CrmOutbox) -> None:
        now = self.clock()
        entry.attempts += 1
        try:
            if entry.external_id is None:
                external_id = await self.reporter.call_started(entry.call)
                if external_id is None:
                    entry.done_at, entry.outcome = now, self._skipped()
                    return
                entry.external_id = external_id
                await session.commit()  # remembered before finishing: never registered twice
                # Claimed again (the commit let the row go): another node that took it
                # meanwhile finishes it, not this one.
                try:
                    await session.refresh(entry, with_for_update={"nowait": True})
                except DBAPIError:
                    await session.rollback()
                    return
                if entry.done_at is not None:
                    return
            await self.reporter.call_finished(entry.call, entry.external_id)
            entry.done_at, entry.outcome = now, "written"
        except Exception as e:
            if getattr(e, "retryable", True):
                delay = delay_for(entry.attempts, base=self.retry_base, most=MAX_BACKOFF_SECONDS)
                entry.next_attempt_at = now + timedelta(seconds=delay)
                entry.outcome = f"retrying: {e}"[:300]
                log.warning("writing a call to the CRM failed; retrying in %.0f s: %s", delay, e)
            else:
                entry.done_at, entry.outcome = now, f"refused: {e}"[:300]
                log.error("the CRM refused a call for good: %s", e)

    def _skipped(self) -> str:
        return f"skipped: {self.reporter.last_skip_reason or 'not written'}"[:300]
