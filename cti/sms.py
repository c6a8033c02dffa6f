"""SMS, durably: the outbox that sends through the modems and the inbox that receives.

Sending. ``queue_sms`` stores a message as ``queued`` before the API answers. One worker
per modem claims due messages (any modem may take one, unless the sender named a modem;
a message whose first parts went out stays on that modem, or the phone could not join
the parts), and sends it part by part. Before a part is handed to the modem, the part's
number is written down (``submitting_part``); the modem's message reference is written
when it confirms. Statuses: queued -> sending -> sent (all parts confirmed) ->
delivered (every part's status report says so) or failed (with the modem's or the
network's reason). A transient error (network, congestion, no signal) puts the message
back in the queue with exponential backoff; a permanent one fails it.

The restart rule, for a message found ``sending`` when the service starts (or when a
modem stops answering mid-send): when no part was being handed over, nothing can have
left the modem unconfirmed, so the message is queued again and goes on with the parts
not yet sent. When a part was being handed over, the modem may have sent it before the
confirmation was lost; sending it again could deliver it twice, so the message fails
with a reason saying so, and a person decides (``POST /api/sms`` sends it again).

Receiving. A PDU the modem announces is read, stored as a part, and only then deleted
from the SIM; at start-up, what arrived while the service was down is read the same way.
Parts of a long message wait in ``sms_inbound_parts`` until the last arrives (or a day
has passed: then what arrived is kept as an incomplete message), so a restart between
parts loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cti.clients.builtin import lookup_in
from cti.db.models import SmsInboundPart, SmsMessage, User
from cti.domain import SmsStatus, utcnow
from cti.events import DomainEvent, SmsReceived, SmsStatusChanged
from cti.tasks import TaskMonitor
from gsm_modem.errors import ModemError
from gsm_modem.modem import ModemUnavailable
from gsm_modem.pdu import (
    CompleteMessage,
    Deliver,
    PduError,
    Reassembler,
    StatusReport,
    decode,
    encode_submit,
)

log = logging.getLogger("cti.sms")

MAX_ATTEMPTS = 8
MAX_BACKOFF = timedelta(minutes=10)
IDLE_SECONDS = 5.0  # look for due retries this often even when nothing new arrives
INCOMPLETE_AFTER = timedelta(hours=24)
STATUS_REPORT_WINDOW = timedelta(days=3)


class SmsModem(Protocol):
    """What the outbox needs from a modem driver (gsm_modem.modem.GsmModem)."""

    @property
    def ready(self) -> bool: ...

    async def send_pdu(self, pdu: str, tpdu_length: int) -> int: ...


Publish = Callable[[DomainEvent], None]


@dataclass(frozen=True, slots=True)
class Sender:
    """Who a received message is from, as the directory knows them."""

    client_id: int | None
    manager_extension: str | None


class SenderLookup:
    """Who wrote: the client behind the number, and whose screen it goes to: the client's
    responsible manager, or else whoever last texted that number."""

    def __init__(self, sessions: async_sessionmaker, suffix_digits: int) -> None:
        self.sessions = sessions
        self.suffix_digits = suffix_digits

    async def __call__(self, number: str) -> Sender:
        async with self.sessions() as session:
            match = await lookup_in(session, number, self.suffix_digits)
            if match is not None and match.manager and match.manager.extension:
                return Sender(int(match.client_id), match.manager.extension)
            last_writer = await session.scalar(
                select(User.extension)
                .join(SmsMessage, SmsMessage.user_id == User.id)
                .where(SmsMessage.direction == "out", SmsMessage.number == number)
                .order_by(SmsMessage.created_at.desc())
                .limit(1)
            )
        return Sender(int(match.client_id) if match else None, last_writer)


def new_sms(
    number: str,
    text: str,
    *,
    user_id: int | None,
    client_id: int | None,
    requested_modem: str | None,
    parts: int,
    now: datetime,
) -> SmsMessage:
    return SmsMessage(
        id=uuid.uuid4().hex,
        direction="out",
        requested_modem=requested_modem,
        number=number,
        text=text,
        status=SmsStatus.QUEUED.value,
        user_id=user_id,
        client_id=client_id,
        parts=parts,
        concat_ref=uuid.uuid4().int % 256,
        part_refs=[],
        delivered_refs=[],
        status_report=True,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
    )


class SmsOutbox:
    def __init__(
        self,
        sessions: async_sessionmaker,
        publish: Publish,
        modems: dict[str, SmsModem],
        *,
        retry_base_seconds: float = 5.0,
        clock: Callable[[], datetime] = utcnow,
        tasks: TaskMonitor | None = None,
    ) -> None:
        self.sessions = sessions
        self.publish = publish
        self.modems = modems
        self.tasks = tasks or TaskMonitor()
        self.retry_base = retry_base_seconds
        self.clock = clock
        self._wakeup: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._claiming = asyncio.Lock()  # one claim at a time: a message goes to one modem
        self._marking = asyncio.Lock()  # a message's status: the sender's and the reports'
        self._started = False
        self._stopping = False

    async def start(self) -> None:
        """Apply the restart rule, then send: one worker per modem."""
        await self.recover()
        for name, modem in self.modems.items():
            self._start_worker(name, modem)
        self._started = True

    def add_modem(self, name: str, modem: SmsModem) -> None:
        self.modems[name] = modem
        if self._started:
            self._start_worker(name, modem)

    def _start_worker(self, name: str, modem: SmsModem) -> None:
        self._wakeup[name] = asyncio.Event()
        self._tasks.append(self.tasks.spawn(self._work(name, modem), f"sms-outbox-{name}"))

    def wake(self) -> None:
        for event in self._wakeup.values():
            event.set()

    async def stop(self, grace_seconds: float = 15.0) -> None:
        """Let messages being sent finish (cut short, one would fail by the restart rule),
        then stop."""
        self._stopping = True
        self.wake()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=grace_seconds)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def recover(self, modem: str | None = None) -> None:
        """Apply the restart rule (module docstring) to messages left ``sending``."""
        async with self.sessions() as session:
            query = select(SmsMessage).where(SmsMessage.status == SmsStatus.SENDING.value)
            if modem is not None:
                query = query.where(SmsMessage.modem == modem)
            for message in await session.scalars(query):
                if message.submitting_part is None:
                    self._requeue(message, count_attempt=False)
                else:
                    part = message.submitting_part + 1
                    self._fail(
                        message,
                        f"interrupted while the modem was sending part {part} of "
                        f"{message.parts}; it may have gone out, so it is not sent again "
                        "automatically",
                    )
                log.warning(
                    "SMS found mid-send",
                    extra={"fields": {"sms": message.id, "now": message.status}},
                )
            await session.commit()

    # -- the workers ------------------------------------------------------------------

    async def _work(self, name: str, modem: SmsModem) -> None:
        wakeup = self._wakeup[name]
        while not self._stopping:
            try:
                if modem.ready and (message_id := await self._claim(name)) is not None:
                    await self._send(name, modem, message_id)
                    continue
            except Exception:
                log.exception("the SMS outbox failed a round; retrying")
            wakeup.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(IDLE_SECONDS):
                    await wakeup.wait()

    async def _claim(self, modem: str) -> str | None:
        async with self._claiming, self.sessions() as session:
            message_id = await session.scalar(
                select(SmsMessage.id)
                .where(
                    SmsMessage.status == SmsStatus.QUEUED.value,
                    SmsMessage.next_attempt_at <= self.clock(),
                    or_(SmsMessage.requested_modem.is_(None), SmsMessage.requested_modem == modem),
                    or_(SmsMessage.modem.is_(None), SmsMessage.modem == modem),
                )
                .order_by(SmsMessage.next_attempt_at, SmsMessage.created_at)
                .limit(1)
            )
            if message_id is None:
                return None
            claimed = await session.execute(
                update(SmsMessage)
                .where(SmsMessage.id == message_id, SmsMessage.status == SmsStatus.QUEUED.value)
                .values(status=SmsStatus.SENDING.value, modem=modem, updated_at=self.clock())
            )
            await session.commit()
        return message_id if claimed.rowcount else None

    async def _send(self, name: str, modem: SmsModem, message_id: str) -> None:
        async with self.sessions() as session:
            message = await session.get(SmsMessage, message_id)
            assert message is not None
            await self._announce(session, message)  # sending
            parts = encode_submit(
                message.number,
                message.text,
                reference=message.concat_ref,
                status_report=message.status_report,
            )
            for index in range(len(message.part_refs), len(parts)):
                part = parts[index]
                message.submitting_part = index
                message.updated_at = self.clock()
                await session.commit()
                try:
                    reference = await modem.send_pdu(part.hex, part.tpdu_length)
                except ModemUnavailable as e:
                    # Refused before anything was written: nothing can have gone out.
                    message.submitting_part = None
                    self._requeue(message, count_attempt=True, reason=str(e))
                    return await self._finish(session, message)
                except ModemError as e:
                    if e.kind == "timeout":  # written, never confirmed: the restart rule
                        await session.commit()
                        await self.recover(name)
                        await session.refresh(message)
                        return await self._announce(session, message)
                    message.submitting_part = None
                    if e.transient and message.attempts + 1 < MAX_ATTEMPTS:
                        self._requeue(message, count_attempt=True, reason=e.message)
                    else:
                        self._fail(message, e.message)
                    return await self._finish(session, message)
                message.part_refs = [*message.part_refs, reference]
                message.submitting_part = None
                await session.commit()  # at once: its status report may follow quickly
            async with self._marking:  # no status report lands between reading and writing
                # Reports for the first parts may have come while the last ones went out.
                await session.refresh(message, ["status", "reason", "delivered_refs"])
                if message.status == SmsStatus.FAILED.value:  # a part was not delivered
                    return await self._announce(session, message)
                message.status = SmsStatus.SENT.value
                message.sent_at = message.updated_at = self.clock()
                message.reason = None
                if set(message.part_refs) <= set(message.delivered_refs):
                    message.status = SmsStatus.DELIVERED.value
                    message.delivered_at = message.sent_at
                await session.commit()
            log.info(
                "SMS sent",
                extra={"fields": {"sms": message.id, "modem": name, "parts": len(parts)}},
            )
            await self._announce(session, message)

    async def _finish(self, session: AsyncSession, message: SmsMessage) -> None:
        await session.commit()
        await self._announce(session, message)

    async def _announce(self, session: AsyncSession, message: SmsMessage) -> None:
        extension = None
        if message.user_id is not None:
            extension = await session.scalar(
                select(User.extension).where(User.id == message.user_id)
            )
        status, reason = SmsStatus(message.status), message.reason
        self.publish(
            SmsStatusChanged(sms_id=message.id, status=status, reason=reason, extension=extension)
        )

    def _requeue(
        self, message: SmsMessage, *, count_attempt: bool, reason: str | None = None
    ) -> None:
        now = self.clock()
        if count_attempt:
            message.attempts += 1
        delay = timedelta(seconds=self.retry_base * 2 ** max(message.attempts - 1, 0))
        message.status = SmsStatus.QUEUED.value
        message.next_attempt_at = now + min(delay, MAX_BACKOFF) if count_attempt else now
        message.reason = reason
        message.updated_at = now
        if not message.part_refs:
            message.modem = None  # nothing went out yet: any modem may take it

    def _fail(self, message: SmsMessage, reason: str) -> None:
        message.status = SmsStatus.FAILED.value
        message.reason = reason[:300]
        message.submitting_part = None
        message.updated_at = self.clock()

    # -- status reports ----------------------------------------------------------------

    async def status_report(self, modem: str, report: StatusReport) -> None:
        """A part's fate from the network: delivered, failed for good, or still trying."""
        if not report.final:
            return
        since = self.clock() - STATUS_REPORT_WINDOW
        async with self._marking, self.sessions() as session:
            candidates = await session.scalars(
                select(SmsMessage)
                .where(
                    SmsMessage.direction == "out",
                    SmsMessage.modem == modem,
                    SmsMessage.status.in_((SmsStatus.SENDING.value, SmsStatus.SENT.value)),
                    SmsMessage.updated_at >= since,
                )
                .order_by(SmsMessage.created_at.desc())
                .limit(500)
            )
            # References wrap at 256: the newest message that used this one is meant.
            message = next((m for m in candidates if report.reference in m.part_refs), None)
            if message is None:
                log.info("a status report for no message we know (reference %d)", report.reference)
                return
            if not report.delivered:
                self._fail(message, report.reason or "the network could not deliver it")
            else:
                message.delivered_refs = sorted({*message.delivered_refs, report.reference})
                sent = message.status == SmsStatus.SENT.value  # else: parts still going out
                if sent and set(message.part_refs) <= set(message.delivered_refs):
                    message.status = SmsStatus.DELIVERED.value
                    message.delivered_at = self.clock()
                message.updated_at = self.clock()
            await self._finish(session, message)


class SmsInbox:
    def __init__(
        self,
        sessions: async_sessionmaker,
        publish: Publish,
        identify: Callable[[str], Any],  # async: number -> Sender
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.publish = publish
        self.identify = identify
        self.clock = clock

    async def store_part(self, modem: str, pdu: str) -> None:
        await self._collect(modem, pdu)

    async def sweep(self, modem: str) -> None:
        """Keep messages whose missing parts never came (run now and then)."""
        await self._collect(modem, None)

    async def _collect(self, modem: str, pdu: str | None) -> None:
        now = self.clock()
        async with self.sessions() as session:
            if pdu is not None:
                session.add(SmsInboundPart(modem=modem, pdu=pdu, received_at=now))
                await session.flush()
            messages = []
            for complete, rows in await self._assemble(session, modem, now):
                sender = await self.identify(complete.address)
                message = SmsMessage(
                    id=uuid.uuid4().hex,
                    direction="in",
                    modem=modem,
                    number=complete.address,
                    text=complete.text or "",
                    status=SmsStatus.RECEIVED.value,
                    reason=None if complete.complete else "some parts never arrived",
                    client_id=sender.client_id,
                    routed_extension=sender.manager_extension,
                    parts=len(complete.parts),
                    part_refs=[],
                    delivered_refs=[],
                    status_report=False,
                    created_at=now,
                    updated_at=now,
                )
                session.add(message)
                for row in rows:
                    await session.delete(row)
                messages.append((message, sender))
            await session.commit()
        for message, sender in messages:
            log.info("SMS received", extra={"fields": {"sms": message.id, "modem": modem}})
            self.publish(
                SmsReceived(
                    sms_id=message.id,
                    modem=modem,
                    sender=message.number,
                    text=message.text,
                    manager_extension=sender.manager_extension,
                )
            )

    async def _assemble(
        self, session: AsyncSession, modem: str, now: datetime
    ) -> list[tuple[CompleteMessage, list[SmsInboundPart]]]:
        """Messages whose parts are all here (or that waited too long), with their rows
        (a part stored twice included)."""
        rows = await session.scalars(
            select(SmsInboundPart).where(SmsInboundPart.modem == modem).order_by(SmsInboundPart.id)
        )
        reassembler = Reassembler()
        parts: list[tuple[Deliver, SmsInboundPart]] = []
        done: list[CompleteMessage] = []
        for row in rows:
            try:
                part = decode(row.pdu)
            except PduError as e:
                log.warning("an unreadable SMS PDU is kept as it came: %s", e)
                continue
            if isinstance(part, Deliver):
                parts.append((part, row))
                complete = reassembler.add(part, row.received_at.timestamp())
                if complete is not None:
                    done.append(complete)
        done += reassembler.expire(now.timestamp(), INCOMPLETE_AFTER.total_seconds())
        return [(c, [row for part, row in parts if part in c.parts]) for c in done]
