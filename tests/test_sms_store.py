"""The SMS outbox and inbox against the database, with scripted modems: statuses, retries,
the restart rule, status reports, several modems, reassembly (SQLite and PostgreSQL)."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from helpers import eventually
from sqlalchemy import func, select
from sqlalchemy import text as sql

from cti.db import migrate
from cti.db.engine import create_engine, session_factory
from cti.db.models import SmsInboundPart, SmsMessage, User
from cti.domain import SmsStatus
from cti.modem import DeliveryReport, SmsTextError
from cti.sms import INCOMPLETE_AFTER, Sender, SenderLookup, SmsInbox, SmsOutbox, new_sms
from gsm_modem.errors import ModemError
from gsm_modem.modem import ModemUnavailable
from gsm_modem.pdu import StatusReport, decode, encode_deliver, encode_submit
from gsm_modem.sms import GSM_CODEC, SmsOverPdu, delivery_report, read, read_part

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
LONG_TEXT = "Здравствуйте! " * 10  # UCS-2, 140 characters: 3 parts of 67


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


class ScriptedModem(SmsOverPdu):
    """Answers AT+CMGS with references, or with the errors it is given, part by part."""

    def __init__(self, failures: list[Exception] | None = None) -> None:
        self.ready = True
        self.failures = list(failures or [])
        self.sent: list[str] = []
        self.next_reference = 10

    async def send_pdu(self, pdu: str, tpdu_length: int) -> int:
        assert len(pdu) // 2 - int(pdu[:2], 16) - 1 == tpdu_length
        await asyncio.sleep(0)
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(pdu)
        self.next_reference += 1
        return self.next_reference


def cms(code: int, message: str, *, transient: bool) -> ModemError:
    return ModemError(kind="cms", code=code, message=message, transient=transient)


@pytest.fixture
def events():
    return []


@pytest.fixture
def clock():
    return Clock()


async def queue(service, clock, text: str = "Привет", **fields) -> str:
    async with service.sessions() as session:
        message = new_sms(
            "+79161234567",
            text,
            user_id=None,
            client_id=None,
            requested_modem=fields.get("requested_modem"),
            parts=len(encode_submit("+79161234567", text, reference=0)),
            now=clock(),
        )
        for key, value in fields.items():
            setattr(message, key, value)
        session.add(message)
        await session.commit()
        return message.id


async def stored(service, sms_id: str) -> SmsMessage:
    async with service.sessions() as session:
        return await session.get(SmsMessage, sms_id)


def outbox(service, events, clock, **modems) -> SmsOutbox:
    return SmsOutbox(service.sessions, events.append, modems, clock=clock)


async def test_a_message_goes_queued_sending_sent_then_delivered(service, events, clock) -> None:
    modem = ScriptedModem()
    box = outbox(service, events, clock, sim1=modem)
    sms_id = await queue(service, clock, LONG_TEXT)
    await box.start()
    try:
        await eventually(lambda: _status(service, sms_id, SmsStatus.SENT))
    finally:
        await box.stop()
    message = await stored(service, sms_id)
    assert (message.modem, message.parts, message.part_refs) == ("sim1", 3, [11, 12, 13])
    texts = [decode(pdu).text for pdu in modem.sent]
    assert "".join(texts) == LONG_TEXT
    assert [e.status for e in events if e.sms_id == sms_id] == [SmsStatus.SENDING, SmsStatus.SENT]

    for reference in (11, 12):
        await box.status_report("sim1", report(reference, 0x00))
        assert (await stored(service, sms_id)).status == SmsStatus.SENT  # part 13 not yet
    await box.status_report("sim1", report(13, 0x20))  # still trying: nothing changes
    await box.status_report("sim1", report(13, 0x00))
    message = await stored(service, sms_id)
    assert message.status == SmsStatus.DELIVERED and message.delivered_at == NOW


async def test_a_permanent_network_failure_in_a_status_report_fails_the_message(
    service, events, clock
) -> None:
    box = outbox(service, events, clock, sim1=ScriptedModem())
    sms_id = await queue(service, clock)
    await box.start()
    await eventually(lambda: _status(service, sms_id, SmsStatus.SENT))
    await box.stop()
    await box.status_report("sim1", report(11, 0x41))
    message = await stored(service, sms_id)
    assert message.status == SmsStatus.FAILED and message.reason


async def test_transient_errors_retry_with_backoff_and_resume_at_the_failed_part(
    service, events, clock
) -> None:
    congestion = cms(42, "congestion in the network", transient=True)
    modem = ScriptedModem([congestion])
    box = outbox(service, events, clock, sim1=modem)
    sms_id = await queue(service, clock, LONG_TEXT, part_refs=[7], modem="sim1")
    await box.start()
    try:
        await eventually(lambda: _status(service, sms_id, SmsStatus.QUEUED, attempts=1))
        message = await stored(service, sms_id)
        assert message.reason == "congestion in the network"
        assert message.next_attempt_at == NOW + timedelta(seconds=5)
        assert message.modem == "sim1"  # a part went out: the rest must follow it
        clock.now += timedelta(seconds=6)
        box.wake()
        await eventually(lambda: _status(service, sms_id, SmsStatus.SENT))
    finally:
        await box.stop()
    message = await stored(service, sms_id)
    assert message.part_refs == [7, 11, 12]  # part 1 was not sent again
    assert [decode(pdu).concat.seq for pdu in modem.sent] == [2, 3]


async def test_a_permanent_error_fails_with_the_modems_reason(service, events, clock) -> None:
    barred = cms(21, "the network refused the message (barred number?)", transient=False)
    box = outbox(service, events, clock, sim1=ScriptedModem([barred]))
    sms_id = await queue(service, clock)
    await box.start()
    try:
        await eventually(lambda: _status(service, sms_id, SmsStatus.FAILED))
    finally:
        await box.stop()
    message = await stored(service, sms_id)
    assert message.reason == "the network refused the message (barred number?)"
    assert message.submitting_part is None


async def test_an_unplugged_modem_puts_the_message_back_for_any_modem(
    service, events, clock
) -> None:
    gone = ScriptedModem([ModemUnavailable("modem sim1 is not connected")])
    box = outbox(service, events, clock, sim1=gone)
    sms_id = await queue(service, clock)
    await box.start()
    try:
        await eventually(lambda: _status(service, sms_id, SmsStatus.QUEUED, attempts=1))
    finally:
        await box.stop()
    assert (await stored(service, sms_id)).modem is None


@pytest.mark.parametrize(
    ("submitting", "expected"),
    [(None, SmsStatus.QUEUED), (1, SmsStatus.FAILED)],
    ids=["nothing-handed-over", "part-handed-over"],
)
async def test_the_restart_rule(service, events, clock, submitting, expected) -> None:
    sms_id = await queue(
        service,
        clock,
        LONG_TEXT,
        status=SmsStatus.SENDING.value,
        modem="sim1",
        part_refs=[5],
        submitting_part=submitting,
    )
    await outbox(service, events, clock).recover()
    message = await stored(service, sms_id)
    assert message.status == expected
    if expected == SmsStatus.FAILED:
        assert "part 2 of 3" in message.reason and "not sent again" in message.reason
    else:
        assert message.part_refs == [5] and message.modem == "sim1"


async def test_a_timeout_after_the_pdu_was_written_is_not_resent(service, events, clock) -> None:
    timeout = ModemError(kind="timeout", code=None, message="no answer", transient=True)
    modem = ScriptedModem([timeout])
    box = outbox(service, events, clock, sim1=modem)
    sms_id = await queue(service, clock)
    await box.start()
    try:
        await eventually(lambda: _status(service, sms_id, SmsStatus.FAILED))
    finally:
        await box.stop()
    assert modem.sent == [] and "may have gone out" in (await stored(service, sms_id)).reason


async def test_several_modems_share_the_queue_and_send_each_message_once(
    service, events, clock
) -> None:
    modems = {f"sim{n}": ScriptedModem() for n in range(3)}
    box = outbox(service, events, clock, **modems)
    ids = [await queue(service, clock, f"сообщение {n}") for n in range(12)]
    ids.append(await queue(service, clock, "only via sim2", requested_modem="sim2"))
    await box.start()
    try:
        for sms_id in ids:
            await eventually(lambda sms_id=sms_id: _status(service, sms_id, SmsStatus.SENT))
    finally:
        await box.stop()
    texts = [decode(pdu).text for modem in modems.values() for pdu in modem.sent]
    assert sorted(texts) == sorted([f"сообщение {n}" for n in range(12)] + ["only via sim2"])
    assert (await stored(service, ids[-1])).modem == "sim2"


async def test_received_parts_are_kept_until_the_message_is_whole(service, events, clock) -> None:
    senders = []

    async def identify(number: str) -> Sender:
        senders.append(number)
        return Sender(None, "101")

    inbox = SmsInbox(service.sessions, events.append, identify, clock=clock)
    pdus = encode_deliver("+79161234567", LONG_TEXT, reference=9, timestamp=NOW)
    parts = [read(pdu) for pdu in pdus]
    await inbox.store_part("sim1", parts[2])
    await inbox.store_part("sim1", parts[0])
    await inbox.store_part("sim1", parts[0])  # read twice (after a restart, say)
    assert events == [] and await _count(service, SmsInboundPart) == 3
    await inbox.store_part("sim1", parts[1])
    [received] = events
    assert received.text == LONG_TEXT and received.manager_extension == "101"
    assert received.sender == "+79161234567" and senders == ["+79161234567"]
    assert await _count(service, SmsInboundPart) == 0
    message = await stored(service, received.sms_id)
    assert (message.direction, message.status, message.parts) == ("in", "received", 3)


async def test_a_message_whose_parts_never_all_come_is_kept_after_a_day(
    service, events, clock
) -> None:
    async def identify(number: str) -> Sender:
        return Sender(None, None)

    inbox = SmsInbox(service.sessions, events.append, identify, clock=clock)
    pdus = encode_deliver("+79161234567", LONG_TEXT, reference=3, timestamp=NOW)
    parts = [read(pdu) for pdu in pdus]
    await inbox.store_part("sim1", parts[0])
    await inbox.sweep("sim1")
    assert events == []
    clock.now += INCOMPLETE_AFTER + timedelta(minutes=1)
    await inbox.sweep("sim1")
    [received] = events
    message = await stored(service, received.sms_id)
    assert message.reason == "some parts never arrived" and message.parts == 1
    assert message.text == LONG_TEXT[:67]


async def _status(service, sms_id: str, status: SmsStatus, attempts: int | None = None) -> bool:
    message = await stored(service, sms_id)
    return message.status == status and (attempts is None or message.attempts == attempts)


async def _count(service, model) -> int:
    async with service.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model))


def report(reference: int, status: int) -> DeliveryReport:
    return delivery_report(
        StatusReport(
            smsc=None,
            reference=reference,
            recipient="+79161234567",
            timestamp=NOW,
            discharge_time=NOW,
            status=status,
        )
    )


class GatedModem(ScriptedModem):
    """Holds the second part back until the test lets it go."""

    def __init__(self) -> None:
        super().__init__()
        self.first_sent = asyncio.Event()
        self.release = asyncio.Event()

    async def send_pdu(self, pdu: str, tpdu_length: int) -> int:
        if self.sent:
            self.first_sent.set()
            await self.release.wait()
        return await super().send_pdu(pdu, tpdu_length)


async def test_a_report_for_a_part_that_comes_before_the_last_part_is_sent_counts(
    service, events, clock
) -> None:
    modem = GatedModem()
    box = outbox(service, events, clock, sim1=modem)
    sms_id = await queue(service, clock, LONG_TEXT[:100])  # two parts
    await box.start()
    try:
        await modem.first_sent.wait()
        await box.status_report("sim1", report(11, 0x00))  # part 1 delivered, part 2 pending
        assert (await stored(service, sms_id)).status == SmsStatus.SENDING
        modem.release.set()
        await eventually(lambda: _status(service, sms_id, SmsStatus.SENT))
        await box.status_report("sim1", report(12, 0x00))
        assert (await stored(service, sms_id)).status == SmsStatus.DELIVERED
    finally:
        await box.stop()


async def test_a_reply_from_a_stranger_goes_to_whoever_texted_that_number(
    service, clock, make_user
) -> None:
    await make_user("sales", "105", username="sophea")
    async with service.sessions() as session:
        sophea = await session.scalar(select(User).where(User.username == "sophea"))
        message = new_sms(
            "+79990001122",
            "hello",
            user_id=sophea.id,
            client_id=None,
            requested_modem=None,
            parts=1,
            now=clock(),
        )
        session.add(message)
        await session.commit()
    lookup = SenderLookup(service.sessions, service.directory)
    assert await lookup("+79990001122") == Sender(None, "105")
    assert await lookup("+79990009999") == Sender(None, None)


async def test_parts_kept_as_they_came_are_read_again_when_the_modem_comes_up(
    service, events, clock
) -> None:
    """What the modem could not read, and parts stored as PDUs before migration 0011,
    wait as they came; read again, they join the parts that came as text."""

    async def identify(number: str) -> Sender:
        return Sender(None, None)

    inbox = SmsInbox(service.sessions, events.append, identify, clock=clock)
    pdus = encode_deliver("+79161234567", LONG_TEXT, reference=5, timestamp=NOW)
    async with service.sessions() as session:  # as 0011 leaves a part stored before it
        session.add(SmsInboundPart(modem="sim1", raw=pdus[0], received_at=NOW))
        await session.commit()
    await inbox.keep_unread("sim1", "NOT A PDU")
    for pdu in pdus[1:]:
        await inbox.store_part("sim1", read(pdu))
    assert events == [] and await _count(service, SmsInboundPart) == 4
    await inbox.reread("sim1", read_part)
    await inbox.sweep("sim1")
    [received] = events
    assert received.text == LONG_TEXT
    async with service.sessions() as session:
        [kept] = (await session.scalars(select(SmsInboundPart))).all()
    assert (kept.raw, kept.text) == ("NOT A PDU", None)


async def test_counting_parts_asks_the_modem_else_the_codec_given(service, events, clock) -> None:
    assert outbox(service, events, clock).parts_needed("hi") is None
    with_codec = SmsOutbox(service.sessions, events.append, {}, codec=GSM_CODEC)
    assert with_codec.parts_needed(LONG_TEXT) == ("ucs2", 3)
    assert outbox(service, events, clock, sim1=ScriptedModem()).parts_needed("hi") == ("gsm7", 1)
    with pytest.raises(SmsTextError):
        with_codec.parts_needed("lone \ud83d")


async def test_a_text_no_sms_can_carry_fails_instead_of_looping(service, events, clock) -> None:
    box = outbox(service, events, clock, sim1=ScriptedModem())
    sms_id = await queue(service, clock, "ok", number="not a number")
    await box.start()
    try:
        await eventually(lambda: _status(service, sms_id, SmsStatus.FAILED))
    finally:
        await box.stop()
    assert "recipient" in (await stored(service, sms_id)).reason


async def test_migration_0011_keeps_stored_pdus_for_the_modem_to_read(db_url) -> None:
    engine = create_engine(db_url)
    try:
        await migrate.upgrade(engine, "0010")
        async with engine.begin() as conn:
            await conn.execute(
                sql("INSERT INTO sms_inbound_parts (modem, pdu, received_at) VALUES (:m, :p, :t)"),
                {"m": "sim1", "p": "0011AA", "t": NOW},
            )
        await migrate.upgrade(engine)
        sessions = session_factory(engine)
        async with sessions() as session:
            [old] = (await session.scalars(select(SmsInboundPart))).all()
            assert (old.raw, old.text, old.received_at) == ("0011AA", None, NOW)
            session.add(SmsInboundPart(modem="sim1", received_at=NOW, sender="+7", text="x"))
            await session.commit()
        await migrate.downgrade(engine, "0010")  # the text-only part cannot go back
        async with engine.connect() as conn:
            rows = (await conn.execute(sql("SELECT pdu FROM sms_inbound_parts"))).all()
        assert [tuple(row) for row in rows] == [("0011AA",)]
    finally:
        await engine.dispose()


class ComesUpWhileLookedAt(ScriptedModem):
    """Not ready when the outbox first looks, and coming up just then: the modem link
    wakes the outbox while the worker is still looking."""

    def __init__(self) -> None:
        super().__init__()
        self.box: SmsOutbox | None = None
        self.up = False

    @property
    def ready(self) -> bool:
        if not self.up:
            self.up = True
            assert self.box is not None
            self.box.wake()
            return False
        return True

    @ready.setter
    def ready(self, _value: bool) -> None:  # ScriptedModem sets it; this one decides
        pass


async def test_a_wake_up_while_the_worker_looks_is_not_lost(service, events, clock) -> None:
    """It was: the worker cleared the wake-up after looking, and slept IDLE_SECONDS (5 s)."""
    modem = ComesUpWhileLookedAt()
    box = modem.box = outbox(service, events, clock, sim1=modem)
    sms_id = await queue(service, clock)
    await box.start()
    try:
        await eventually(lambda: _status(service, sms_id, SmsStatus.SENT), seconds=2)
    finally:
        await box.stop()
