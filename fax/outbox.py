"""Sending faxes: a durable job queue in front of the PBX's fax line.

A job is written (its document converted to TIFF-F and stored) before it is
acknowledged; a worker sends the due ones one at a time (a fax line carries one fax at a
time), through the PBX adapter, and waits for its ``FaxAttempt``. Retries follow
HylaFAX: a busy line again after ``busy_retry_seconds``, no answer after
``no_answer_retry_seconds``, anything else (and a transmission that failed) after
``retry_seconds``; at most ``max_dials`` dials and ``max_tries`` transmissions begun;
past ``kill_at`` the job gives up. States: queued, dialing, sending (the far end
answered), requeued, done, failed, cancelled, each change a ``fax.status`` event.

A restart loses nothing: queued and requeued jobs wait on in the database. A job that was
dialing when the service stopped is requeued; one that was sending (the far end had
answered) may have gone through, and sending it again could deliver it twice, so it
fails with "unknown" and a person decides (``retry``). A done fax is never sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath

from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from cti.bus import EventBus, Subscription
from cti.config import FaxConfig
from cti.db.models import FaxDocument, User
from cti.domain import utcnow
from cti.events import DomainEvent, FaxAttempt, FaxStatusChanged
from cti.pbx import PbxError, PbxLinkDown
from cti.tasks import TaskMonitor, cancel
from fax.convert import Converted, Paper, Resolution, to_fax
from fax.images import render
from fax.mail import FaxMailer

log = logging.getLogger("cti.fax.outbox")

Send = Callable[[str, str, str], Awaitable[None]]  # (number, file as the PBX names it, id)
ATTEMPT_SECONDS = 1800.0  # no word from the PBX this long after dialling: unknown
WAITING = ("queued", "requeued")
# Look for due jobs this often even when not woken: a fax queued on another node whose
# notice did not come (NATS away) still goes out.
IDLE_SECONDS = 30.0
LINK_DOWN_RETRY_SECONDS = 10.0  # the PBX link is down (starting up, say): try soon


class FaxOutbox:
    def __init__(
        self,
        sessions: async_sessionmaker,
        root: Path,
        options: FaxConfig,
        bus: EventBus,
        send: Send | None,
        tasks: TaskMonitor | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.root = root
        self.options = options
        self.bus = bus
        self.send = send
        self.tasks = tasks or TaskMonitor()
        self.clock = clock
        self._wake = asyncio.Event()
        # A job queued or queued again: wake the sender (with several nodes, the one that
        # sends the faxes: the service sets this to a notice to every node).
        self.announce: Callable[[], None] = self.wake
        self._attempts: dict[str, asyncio.Future[FaxAttempt]] = {}
        self._worker: asyncio.Task[None] | None = None
        self.mailer = FaxMailer(options)
        self._mails: set[asyncio.Task[None]] = set()
        self._listener: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None

    @property
    def can_send(self) -> bool:
        return self.send is not None

    def wake(self) -> None:
        self._wake.set()

    # -- jobs ------------------------------------------------------------------------

    async def submit(
        self,
        number: str,
        documents: list[Path],
        resolution: Resolution,
        *,
        username: str,
        extension: str | None,
        paper: Paper | None = None,
    ) -> FaxDocument:
        """Convert and store the documents and queue the job (ConversionError: refused)."""
        now = self.clock()
        async with self.sessions() as session:
            job = FaxDocument(
                direction="out",
                number=number,
                status="converting",
                search=number.casefold(),
                created_by=username,
                assignee_extension=extension,
                at=now,
                kill_at=now + timedelta(hours=self.options.kill_hours),
            )
            session.add(job)
            await session.commit()
            job_id = job.id
        stem = self.root / "out" / now.strftime("%Y/%m") / f"fax-{job_id}"
        try:
            converted = await asyncio.to_thread(
                self._convert, documents, stem, resolution, paper or self.options.paper
            )
        except Exception:
            async with self.sessions() as session:
                await session.delete(await session.get_one(FaxDocument, job_id))
                await session.commit()
            raise
        relative = str(stem.relative_to(self.root))
        async with self.sessions() as session:
            job = await session.get_one(FaxDocument, job_id)
            job.tiff, job.pdf, job.thumbnail = (f"{relative}.{x}" for x in ("tif", "pdf", "png"))
            job.pages, job.resolution = converted.pages, converted.resolution
            job.size = (self.root / job.tiff).stat().st_size
            job.status, job.next_at = "queued", now
            await session.commit()
        self._changed(job)
        self.announce()
        return job

    def _convert(
        self, documents: list[Path], stem: Path, resolution: Resolution, paper: Paper
    ) -> Converted:
        stem.parent.mkdir(parents=True, exist_ok=True)
        tiff = stem.with_suffix(".tif")
        converted = to_fax(
            documents, tiff, resolution, max_pages=self.options.max_pages, paper=paper
        )
        render(tiff, stem.with_suffix(".pdf"), stem.with_suffix(".png"), max_pages=10_000)
        return converted

    async def retry(self, job_id: int) -> FaxDocument | None:
        """A failed (or unknown) job queued again, counters reset; None: not retryable."""
        async with self.sessions() as session:
            job = await session.get(FaxDocument, job_id)
            if job is None or job.direction != "out" or job.status not in ("failed", "cancelled"):
                return None
            now = self.clock()
            job.status, job.error, job.next_at = "queued", None, now
            job.dials = job.tries = 0
            job.kill_at = now + timedelta(hours=self.options.kill_hours)
            await session.commit()
        self._changed(job)
        self.announce()
        return job

    async def cancel(self, job_id: int) -> FaxDocument | None:
        """A job not yet dialling, cancelled; None: it is not waiting."""
        async with self.sessions() as session:
            job = await session.get(FaxDocument, job_id)
            if job is None or job.direction != "out" or job.status not in WAITING:
                return None
            job.status, job.next_at, job.error = "cancelled", None, "cancelled by the sender"
            await session.commit()
        self._changed(job)
        return job

    # -- running ---------------------------------------------------------------------

    async def start(self) -> None:
        await self._after_restart()
        self._subscription = subscription = self.bus.subscribe(
            prefixes=["fax.attempt"], name="fax-outbox"
        )

        async def listen() -> None:
            while True:
                event = await subscription.get()
                request_id = getattr(event, "request_id", "")
                future = self._attempts.get(request_id)
                if future is None or future.done():
                    continue
                if event.final:
                    future.set_result(event)
                else:  # the far end answered: from now on, sending again could repeat it
                    await self._mark(int(request_id), "sending")

        self._listener = self.tasks.spawn(listen(), "fax-attempts")
        self._worker = self.tasks.spawn(self._run(), "fax-outbox")

    async def stop(self) -> None:
        await cancel(self._worker)
        await cancel(self._listener)
        if self._subscription is not None:  # (another node may send the faxes now)
            self._subscription.close()
            self._subscription = None

    async def _after_restart(self) -> None:
        async with self.sessions() as session:
            jobs = await session.scalars(
                select(FaxDocument).where(
                    FaxDocument.direction == "out",
                    FaxDocument.status.in_(["dialing", "sending", "converting"]),
                )
            )
            for job in jobs:
                if job.status == "converting":  # its files were never finished
                    job.status, job.error = "failed", "the service stopped while converting"
                elif job.status == "sending":  # it may have gone through
                    job.status, job.next_at = "failed", None
                    job.error = "unknown: the service restarted while sending; check, then retry"
                else:
                    job.status, job.next_at = "requeued", self.clock()
                    job.error = "the service restarted while dialling"
            await session.commit()

    async def _run(self) -> None:
        while True:
            job_id, wait = await self._next()
            if job_id is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(wait or IDLE_SECONDS, IDLE_SECONDS)):
                        await self._wake.wait()
                continue
            try:
                await self._send_one(job_id)
            except Exception:
                log.exception("sending fax %s failed; it is requeued", job_id)
                await self._requeue(job_id, "internal error", self.options.retry_seconds)

    async def _next(self) -> tuple[int | None, float | None]:
        """The due job, or how long until one is due (None: none is waiting)."""
        async with self.sessions() as session:
            job = await session.scalar(
                select(FaxDocument)
                .where(FaxDocument.direction == "out", FaxDocument.status.in_(WAITING))
                .order_by(FaxDocument.next_at, FaxDocument.id)
                .limit(1)
            )
        if job is None or job.next_at is None:
            return None, None
        wait = (job.next_at - self.clock()).total_seconds()
        return (job.id, None) if wait <= 0 else (None, wait)

    async def _send_one(self, job_id: int) -> None:
        async with self.sessions() as session:
            job = await session.get_one(FaxDocument, job_id)
            if job.kill_at is not None and self.clock() >= job.kill_at:
                job.status, job.next_at = "failed", None
                job.error = f"gave up at the kill time ({job.error or 'not sent'})"
                await session.commit()
                self._changed(job)
                return
            if self.send is None:
                await session.rollback()
                await self._requeue(job_id, "no PBX sends faxes", self.options.retry_seconds)
                return
            job.status, job.dials = "dialing", job.dials + 1
            await session.commit()
        self._changed(job)
        future: asyncio.Future[FaxAttempt] = asyncio.get_running_loop().create_future()
        self._attempts[str(job_id)] = future
        try:
            assert job.tiff is not None and job.number is not None
            await self.send(job.number, self.pbx_path(job.tiff), str(job_id))
            async with asyncio.timeout(ATTEMPT_SECONDS):
                attempt = await future
        except PbxLinkDown as e:  # nothing was dialled: not a dial, and soon again
            await self._requeue(job_id, str(e), LINK_DOWN_RETRY_SECONDS, undial=True)
            return
        except PbxError as e:
            attempt = FaxAttempt(
                request_id=str(job_id), success=False, code="refused", reason=str(e)
            )
        except TimeoutError:
            attempt = FaxAttempt(
                request_id=str(job_id),
                success=False,
                code="unknown",
                reason="the PBX said nothing of this fax",
                connected=True,
            )
        finally:
            self._attempts.pop(str(job_id), None)
        await self._settle(job_id, attempt)

    def pbx_path(self, relative: str) -> str:
        """The TIFF as the PBX names it: under ``pbx_outgoing_dir`` when the PBX mounts
        this service's fax folder elsewhere, else this host's own path."""
        if self.options.pbx_outgoing_dir:
            return str(PurePosixPath(self.options.pbx_outgoing_dir) / relative)
        return str((self.root / relative).resolve())

    async def _settle(self, job_id: int, attempt: FaxAttempt) -> None:
        options = self.options
        async with self.sessions() as session:
            job = await session.get_one(FaxDocument, job_id)
            if attempt.success:
                job.status, job.error, job.next_at = "done", None, None
                job.remote_station = attempt.remote_station
                job.tries += 1
                if attempt.pages is not None and attempt.pages != job.pages:
                    job.error = f"the PBX reports {attempt.pages} of {job.pages} pages sent"
                await session.commit()
                self._changed(job)
                return
            reason = attempt.reason or attempt.code
            if attempt.code == "unknown":
                job.status, job.next_at = "failed", None
                job.error = f"unknown: {reason}; check with the recipient, then retry"
                await session.commit()
                self._changed(job)
                return
            if attempt.connected:
                job.tries += 1
            delay = {
                "busy": options.busy_retry_seconds,
                "no_answer": options.no_answer_retry_seconds,
            }.get(attempt.code, options.retry_seconds)
            if job.tries >= options.max_tries:
                job.status, job.next_at = "failed", None
                job.error = f"{job.tries} transmissions failed: {reason}"
            elif job.dials >= options.max_dials:
                job.status, job.next_at = "failed", None
                job.error = f"{job.dials} dials: {reason}"
            else:
                job.status, job.error = "requeued", reason
                job.next_at = self.clock() + timedelta(seconds=delay)
            await session.commit()
        self._changed(job)

    async def _mark(self, job_id: int, status: str) -> None:
        async with self.sessions() as session:
            job = await session.get_one(FaxDocument, job_id)
            job.status = status
            await session.commit()
        self._changed(job)

    async def _requeue(
        self, job_id: int, reason: str, seconds: float, *, undial: bool = False
    ) -> None:
        async with self.sessions() as session:
            job = await session.get_one(FaxDocument, job_id)
            job.status, job.error = "requeued", reason
            if undial:
                job.dials = max(0, job.dials - 1)
            job.next_at = self.clock() + timedelta(seconds=seconds)
            await session.commit()
        self._changed(job)

    def _changed(self, job: FaxDocument) -> None:
        log.info("fax job %s", job.status, extra={"fields": {"fax": job.id, "reason": job.error}})
        self.bus.publish_nowait(self._event(job))
        if job.status in ("done", "failed") and self.mailer.enabled and job.created_by:
            task = asyncio.get_running_loop().create_task(self._mail(job))
            self._mails.add(task)
            task.add_done_callback(self._mails.discard)

    async def _mail(self, job: FaxDocument) -> None:
        async with self.sessions() as session:
            to = await session.scalar(select(User.email).where(User.username == job.created_by))
        if to:
            await self.mailer.notify(job, to)

    @staticmethod
    def _event(job: FaxDocument) -> DomainEvent:
        return FaxStatusChanged(
            fax_id=job.id,
            number=job.number,
            status=job.status,
            reason=job.error,
            pages=job.pages,
            extension=job.assignee_extension,
        )
