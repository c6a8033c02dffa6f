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

Receiving. A message the modem announces is read, stored as a part, and only then
deleted from the SIM; at start-up, what arrived while the service was down is read the
same way. Parts of a long message wait in ``sms_inbound_parts`` until the last arrives (or
a day has passed: then what arrived is kept as an incomplete message), so a restart
between parts loses nothing.

The modems are met at the text level (``cti.modem``): the outbox hands a modem a number
and a text and keeps each part's index and reference; the inbox gets parts as text. How
texts become PDUs is the modem package's alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cti.backoff import delay_for
from cti.db.models import SmsInboundPart, SmsMessage, User
from cti.directory import Directory, builtin_client_id, match_of
from cti.domain import SmsStatus, utcnow
from cti.events import DomainEvent, SmsReceived, SmsStatusChanged
from cti.modem import (
    DeliveryReport,
    ModemNoAnswer,
    ModemRefused,
    ModemUnavailable,
    ReceivedPart,
    SmsCodec,
    SmsModem,
    SmsTextError,
)
from cti.tasks import TaskMonitor

log = logging.getLogger("cti.sms")

MAX_ATTEMPTS = 8
MAX_BACKOFF = timedelta(minutes=10)
IDLE_SECONDS = 5.0  # look for due retries this often even when nothing new arrives
INCOMPLETE_AFTER = timedelta(hours=24)
STATUS_REPORT_WINDOW = timedelta(days=3)


Publish = Callable[[DomainEvent], None]


@dataclass(frozen=True, slots=True)
class Sender:
    """Who a received message is from, as the directory knows them."""

    client_id: int | None
    manager_extension: str | None


class SenderLookup:
    """Who wrote: the client behind the number, and whose screen it goes to: the client's
    responsible manager, or else whoever last texted that number."""

    def __init__(self, sessions: async_sessionmaker, directory: Directory) -> None:
        self.sessions = sessions
        self.directory = directory

    async def __call__(self, number: str) -> Sender:
        match = await match_of(self.directory, number)
        if match is not None and match.manager and match.manager.extension:
            return Sender(builtin_client_id(match), match.manager.extension)
        async with self.sessions() as session:
            last_writer = await session.scalar(
                select(User.extension)
                .join(SmsMessage, SmsMessage.user_id == User.id)
                .where(SmsMessage.direction == "out", SmsMessage.number == number)
                .order_by(SmsMessage.created_at.desc())
                .limit(1)
            )
        return Sender(builtin_client_id(match), last_writer)


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
        codec: SmsCodec | None = None,  # counts parts when no modem is there to ask
    ) -> None:
        self.sessions = sessions
        self.publish = publish
        self.modems = modems
        self.codec = codec
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

    def remove_modem(self, name: str) -> None:
        """Stop sending through ``name`` (another node leads it now); a message it was
        sending finishes or fails by the restart rule there."""
        self.modems.pop(name, None)
        self._wakeup.pop(name, None)
        for task in [t for t in self._tasks if t.get_name() == f"sms-outbox-{name}"]:
            task.cancel()
            self._tasks.remove(task)

    def _start_worker(self, name: str, modem: SmsModem) -> None:
        self._wakeup[name] = asyncio.Event()
        self._tasks.append(self.tasks.spawn(self._work(name, modem), f"sms-outbox-{name}"))

    def parts_needed(self, text: str, modem: str | None = None) -> tuple[str, int] | None:
        """(encoding, parts) of ``text`` as ``modem`` would split it, or (any modem may
        take it) the first one; with no modem, the codec given; None without either.
        SmsTextError for a text no SMS can carry."""
        counter = self.modems.get(modem) if modem is not None else None
        counter = counter or next(iter(self.modems.values()), None) or self.codec
        return None if counter is None else counter.parts_needed(text)

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
            # Cleared before looking, not after: a wake-up (the modem came up, a message
            # was queued) while we look is kept, not lost for IDLE_SECONDS.
            wakeup.clear()
            try:
                if modem.ready and (message_id := await self._claim(name)) is not None:
                    await self._send(name, modem, message_id)
                    continue
            except Exception:
                log.exception("the SMS outbox failed a round; retrying")
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
            try:
                parts = modem.split(
                    message.number,
                    message.text,
                    concat_ref=message.concat_ref,
                    status_report=message.status_report,
                )
            except SmsTextError as e:  # it never will go out: say why, do not loop
                self._fail(message, str(e))
                return await self._finish(session, message)
            for index in range(len(message.part_refs), len(parts)):
                message.submitting_part = index
                message.updated_at = self.clock()
                await session.commit()
                try:
                    reference = await modem.send_part(parts[index])
                except ModemUnavailable as e:
                    # Refused before anything was written: nothing can have gone out.
                    message.submitting_part = None
                    self._requeue(message, count_attempt=True, reason=str(e))
                    return await self._finish(session, message)
                except ModemNoAnswer:  # handed over, never confirmed: the restart rule
                    await session.commit()
                    await self.recover(name)
                    await session.refresh(message)
                    return await self._announce(session, message)
                except ModemRefused as e:
                    message.submitting_part = None
                    if e.transient and message.attempts + 1 < MAX_ATTEMPTS:
                        self._requeue(message, count_attempt=True, reason=e.reason)
                    else:
                        self._fail(message, e.reason)
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
        most = MAX_BACKOFF.total_seconds()
        delay = timedelta(seconds=delay_for(message.attempts, base=self.retry_base, most=most))
        message.status = SmsStatus.QUEUED.value
        message.next_attempt_at = now + delay if count_attempt else now
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

    async def status_report(self, modem: str, report: DeliveryReport) -> None:
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

    async def store_part(self, modem: str, part: ReceivedPart) -> None:
        """Store a part (before the modem deletes its copy), then keep what is whole."""
        row = SmsInboundPart(modem=modem, received_at=self.clock())
        _fill(row, part)
        await self._collect(modem, row)

    async def keep_unread(self, modem: str, raw: str) -> None:
        """Keep what the modem could not read, as it gave it, before its copy is deleted:
        ``reread`` tries it again (a later version may read it)."""
        await self._collect(modem, SmsInboundPart(modem=modem, raw=raw, received_at=self.clock()))

    async def reread(self, modem: str, read: Callable[[str], ReceivedPart | None]) -> None:
        """Read again what was kept as the modem gave it: what it could not read, and the
        parts stored before migration 0011 (PDUs). ``read`` gives the part, None for what
        is no received part (dropped), or raises ValueError (kept). Then ``sweep``."""
        async with self.sessions() as session:
            rows = await session.scalars(
                select(SmsInboundPart).where(
                    SmsInboundPart.modem == modem, SmsInboundPart.raw.is_not(None)
                )
            )
            for row in rows.all():
                try:
                    part = read(row.raw or "")
                except ValueError as e:
                    log.warning("a stored SMS part is still unreadable, kept as it came: %s", e)
                    continue
                if part is None:
                    await session.delete(row)
                else:
                    _fill(row, part)
                    row.raw = None
            await session.commit()

    async def sweep(self, modem: str) -> None:
        """Keep messages whose missing parts never came (run now and then)."""
        await self._collect(modem, None)

    async def _collect(self, modem: str, row: SmsInboundPart | None) -> None:
        now = self.clock()
        async with self.sessions() as session:
            if row is not None:
                session.add(row)
                await session.flush()
            rows = await session.scalars(
                select(SmsInboundPart)
                .where(SmsInboundPart.modem == modem, SmsInboundPart.text.is_not(None))
                .order_by(SmsInboundPart.id)
            )
            messages = []
            for received in _assemble(rows, now):
                sender = await self.identify(received.sender)
                message = SmsMessage(
                    id=uuid.uuid4().hex,
                    direction="in",
                    modem=modem,
                    number=received.sender,
                    text=received.text,
                    status=SmsStatus.RECEIVED.value,
                    reason=None if received.complete else "some parts never arrived",
                    client_id=sender.client_id,
                    routed_extension=sender.manager_extension,
                    parts=len(received.parts),
                    part_refs=[],
                    delivered_refs=[],
                    status_report=False,
                    created_at=now,
                    updated_at=now,
                )
                session.add(message)
                for part in received.rows:
                    await session.delete(part)
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


def _fill(row: SmsInboundPart, part: ReceivedPart) -> None:
    row.sender, row.text, row.sent_at = part.sender, part.text, part.sent_at
    row.concat_ref, row.concat_seq, row.concat_total = part.reference, part.seq, part.total


@dataclass
class _Received:
    """A message stored parts make: whole, or given up on (``INCOMPLETE_AFTER``)."""

    sender: str
    total: int
    parts: dict[int, SmsInboundPart]  # by place, 1..total
    rows: list[SmsInboundPart]  # its parts, and any stored twice

    @property
    def text(self) -> str:
        return "".join(self.parts[seq].text or "" for seq in sorted(self.parts))

    @property
    def complete(self) -> bool:
        return len(self.parts) == self.total


def _assemble(rows: Iterable[SmsInboundPart], now: datetime) -> list[_Received]:
    """The messages the stored parts make, in the order they came: those whose parts are
    all here, and those that got no part for ``INCOMPLETE_AFTER`` (with what came). The
    parts of one message share the sender, the reference and the count; a part stored
    twice (read again after a restart, say) goes with its message."""
    pending: dict[tuple[str, int, int], _Received] = {}
    finished: dict[tuple[str, int, int], _Received] = {}
    done: list[_Received] = []
    for row in rows:
        sender, reference = row.sender or "", row.concat_ref
        total, seq = row.concat_total or 1, row.concat_seq or 1
        if reference is None or total == 1 or not 1 <= seq <= total:
            done.append(_Received(sender, 1, {1: row}, [row]))
            continue
        key = (sender, reference, total)
        if (earlier := finished.get(key)) and _same(earlier.parts.get(seq), row):
            earlier.rows.append(row)
            continue
        received = pending.setdefault(key, _Received(sender, total, {}, []))
        if seq in received.parts:
            if _same(received.parts[seq], row):
                received.rows.append(row)
            continue  # else another message with this reference: a later round takes it
        received.parts[seq] = row
        received.rows.append(row)
        if received.complete:
            done.append(pending.pop(key))
            finished[key] = received
    given_up = now - INCOMPLETE_AFTER
    for received in pending.values():
        if max(part.received_at for part in received.parts.values()) <= given_up:
            done.append(received)
    return done


def _same(part: SmsInboundPart | None, row: SmsInboundPart) -> bool:
    return part is not None and part.text == row.text
