"""Fax: received and sent faxes, stored with their pages."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import async_sessionmaker

from cti.bus import EventBus
from cti.config import Config
from cti.directory import Directory
from cti.periodic import Periodic
from cti.tasks import TaskMonitor
from fax.inbox import FaxInbox
from fax.outbox import FaxOutbox, Send

DAY = 86_400.0
PENDING_CHECK_SECONDS = 10.0  # how often faxes whose TIFF has not come are looked at


@dataclass
class Faxes:
    inbox: FaxInbox
    outbox: FaxOutbox
    jobs: list[Periodic]

    @classmethod
    def create(
        cls,
        sessions: async_sessionmaker,
        config: Config,
        directory: Directory,
        bus: EventBus,
        tasks: TaskMonitor | None = None,
        send: Send | None = None,
    ) -> Faxes:
        """``send``: how a fax goes out (the PBX adapter's ``send_fax``); None: it cannot."""
        inbox = FaxInbox(sessions, config.fax_dir, config.fax, directory, bus.publish_nowait)
        outbox = FaxOutbox(sessions, config.fax_dir, config.fax, bus, send, tasks)
        every = min(PENDING_CHECK_SECONDS, config.fax.missing_after_seconds)
        jobs = [Periodic("fax-pending", every, inbox.retry_pending, tasks)]
        if days := config.fax.retention_days:
            jobs.append(Periodic("fax-retention", DAY, lambda: inbox.purge(days), tasks))
        return cls(inbox, outbox, jobs)

    async def start(self) -> None:
        self.inbox.start()
        await self.outbox.start()
        for job in self.jobs:
            job.start()

    async def stop(self) -> None:
        for job in self.jobs:
            await job.stop()
        await self.outbox.stop()
