"""The asyncio modem driver against the emulator, over a real pty opened with pyserial."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import pytest
from helpers import eventually
from prometheus_client import CollectorRegistry

from cti.bus import InProcessBus
from cti.config import ModemConfig
from cti.links import LinkRegistry
from gsm_modem.emulator import ModemEmulator
from gsm_modem.errors import ModemError
from gsm_modem.modem import (
    GsmModem,
    IncomingCall,
    IncomingCallEnded,
    ModemGone,
    ModemReady,
    ModemUnavailable,
    NewMessage,
    RegistrationChanged,
    StatusReportPdu,
)

DELIVER = "07917283010010F5040BC87238880900F10000993092516195800AE8329BFD4697D9EC37"
# SMS-SUBMIT to +79168999100 asking for a status report (TP-SRR), 23 octets after "00".
SUBMIT = "0031000B919761989901F00000AA0AE8329BFD4697D9EC37"
INIT = [
    "ATZ",
    "ATE0",
    "AT+CMEE=1",
    "AT+CPIN?",
    "AT+CGMI",
    "AT+CGMM",
    "AT+CGSN",
    "AT+CIMI",
    "AT+CMGF=0",
    'AT+CPMS="SM","SM","SM"',
    "AT+CNMI=2,1,0,1,0",
    "AT+CLIP=1",
    "AT+CREG=1",
    "AT+CREG?",
    "AT+CSQ",
    "AT+COPS?",
]


class Events(list):
    """on_event: keeps every event; ``of(type)`` picks one kind."""

    def __call__(self, event: object) -> None:
        self.append(event)

    def of(self, kind: type) -> list:
        return [e for e in self if isinstance(e, kind)]


@pytest.fixture
async def emulator() -> AsyncIterator[ModemEmulator]:
    async with ModemEmulator(send_delay=0.02, status_report_delay=0.01, ring_interval=0.03) as emu:
        yield emu


@pytest.fixture
def links() -> LinkRegistry:
    registry = LinkRegistry(InProcessBus(), CollectorRegistry())
    registry.register("gsm", "modem")
    return registry


@pytest.fixture
async def make_modem(
    emulator: ModemEmulator, links: LinkRegistry
) -> AsyncIterator[Callable[..., object]]:
    """``await make_modem(pin=..., **GsmModem options)`` -> a started modem and its events,
    once it is ready (``wait=False``: at once)."""
    modems: list[GsmModem] = []

    async def make(
        pin: str | None = None, *, wait: bool = True, **options: object
    ) -> tuple[GsmModem, Events]:
        events = Events()
        config = ModemConfig(name="gsm", port=str(emulator.path), pin=pin)
        settings: dict = {
            "links": links,
            "command_timeout": 1.0,
            "ring_gap": 0.3,
            "poll_interval": None,
            "reconnect_min": 0.01,
            "reconnect_max": 0.05,
            **options,
        }
        modem = GsmModem(config, on_event=events, **settings)
        modems.append(modem)
        await modem.start()
        if wait:
            async with asyncio.timeout(5):
                await modem.wait_ready()
        return modem, events

    yield make
    for modem in modems:
        await modem.stop()


@pytest.fixture
async def ready(make_modem) -> tuple[GsmModem, Events]:
    return await make_modem()


async def test_init_identity_and_status(
    ready: tuple[GsmModem, Events], emulator: ModemEmulator, links: LinkRegistry
) -> None:
    modem, events = ready
    assert emulator.commands == INIT
    assert modem.identity == {
        "maker": "Emulated",
        "model": "GSM Modem 1",
        "imei": "356938035643809",
        "imsi": "250011234567890",
    }
    assert modem.status == {
        "ready": True,
        "signal_dbm": -73,
        "signal_bars": 4,
        "registration": "home",
        "operator": "MegaFon",
    }
    assert events == [ModemReady(modem.identity)]
    [link] = links.all()
    assert link.up and "MegaFon" in link.detail
    emulator.rssi = 99
    assert (await modem.query_signal())["signal_dbm"] is None


async def test_pin_is_sent_once_and_never_logged(
    make_modem, emulator: ModemEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    emulator.pin = "8642"
    emulator.unplug()
    emulator.plug()  # the SIM asks for its PIN from now on
    await make_modem(pin="8642")
    assert emulator.commands[3:6] == ["AT+CPIN?", "AT+CPIN=8642", "AT+CPIN?"]
    assert "AT+CPIN=***" in caplog.text
    assert "8642" not in caplog.text


async def test_a_refused_pin_is_not_tried_again(
    make_modem, emulator: ModemEmulator, links: LinkRegistry
) -> None:
    emulator.pin = "1111"
    emulator.unplug()
    emulator.plug()
    modem, _ = await make_modem(pin="2222", wait=False)
    # The driver keeps reconnecting, but asks only whether the SIM is still locked.
    await eventually(lambda: emulator.commands.count("AT+CPIN?") >= 3)
    assert emulator.commands.count("AT+CPIN=2222") == 1
    [link] = links.all()
    assert not link.up and "refused the configured PIN" in link.detail
    with pytest.raises(ModemUnavailable, match="PIN"):
        await modem.read_message(1)


async def test_send_returns_the_reference_and_the_status_report_follows(
    ready: tuple[GsmModem, Events], emulator: ModemEmulator
) -> None:
    modem, events = ready
    assert await modem.send_pdu(SUBMIT, 23) == 1
    assert await modem.send_pdu(SUBMIT, 23, timeout=5) == 2
    assert emulator.sent == [SUBMIT, SUBMIT]
    await eventually(lambda: len(events.of(StatusReportPdu)) == 2)
    # SMS-STATUS-REPORT for each reference, to the number the message went to.
    assert [e.pdu_hex[:22] for e in events.of(StatusReportPdu)] == [
        "0006010B919761989901F0",
        "0006020B919761989901F0",
    ]


@pytest.mark.parametrize(
    ("error", "code", "transient"),
    [("+CMS ERROR: 38", 38, True), ("+CMS ERROR: 50", 50, False), ("+CMS ERROR: 512", 512, True)],
)
async def test_send_errors_are_classified(
    ready: tuple[GsmModem, Events],
    emulator: ModemEmulator,
    error: str,
    code: int,
    transient: bool,
) -> None:
    modem, _ = ready
    emulator.fail_next("AT+CMGS", error)
    with pytest.raises(ModemError) as refused:
        await modem.send_pdu(SUBMIT, 23)
    assert (refused.value.kind, refused.value.code, refused.value.transient) == (
        "cms",
        code,
        transient,
    )
    assert await modem.send_pdu(SUBMIT, 23) == 1  # the next one goes through


async def test_a_bad_pdu_length_is_permanent(ready: tuple[GsmModem, Events]) -> None:
    modem, _ = ready
    with pytest.raises(ModemError) as refused:
        await modem.send_pdu(SUBMIT, 22)
    assert (refused.value.code, refused.value.transient) == (304, False)


async def test_incoming_sms_read_list_delete(
    ready: tuple[GsmModem, Events], emulator: ModemEmulator
) -> None:
    modem, events = ready
    index = emulator.deliver_sms(DELIVER)
    await eventually(lambda: events.of(NewMessage))
    assert events.of(NewMessage) == [NewMessage("SM", index)]
    assert await modem.read_message(index) == DELIVER
    second = emulator.deliver_sms(DELIVER)
    assert await modem.list_messages(stat=0) == [(second, 0, DELIVER)]
    assert await modem.list_messages() == [(index, 1, DELIVER), (second, 1, DELIVER)]
    await modem.delete_message(index)
    await modem.delete_message(second)
    assert await modem.list_messages() == []
    with pytest.raises(ModemError) as empty:
        await modem.read_message(index)
    assert (empty.value.code, empty.value.message) == (321, "invalid memory index")


async def test_unsolicited_in_the_middle_of_an_answer(
    ready: tuple[GsmModem, Events], emulator: ModemEmulator
) -> None:
    modem, events = ready
    emulator.inject_urc("AT+CSQ", '+CMTI: "SM",5')
    emulator.inject_urc("AT+CMGL", "+CREG: 5")
    assert (await modem.query_signal())["signal_bars"] == 4
    assert await modem.list_messages() == []
    assert events.of(NewMessage) == [NewMessage("SM", 5)]
    assert events.of(RegistrationChanged) == [RegistrationChanged(True, "roaming")]
    emulator.set_registration(3)
    await eventually(lambda: len(events.of(RegistrationChanged)) == 2)
    assert modem.status["registration"] == "denied"


async def test_ringing_pops_one_call_then_ends(
    ready: tuple[GsmModem, Events], emulator: ModemEmulator
) -> None:
    _, events = ready
    emulator.ring("+79161234567")
    await eventually(lambda: emulator.rings >= 4)
    emulator.hang_up()
    await eventually(lambda: events.of(IncomingCallEnded))
    assert events[1:] == [IncomingCall("+79161234567"), IncomingCallEnded("+79161234567")]
    emulator.ring(None)  # withheld: +CLIP: "",128
    await eventually(lambda: emulator.rings >= 6)
    emulator.hang_up()
    await eventually(lambda: len(events.of(IncomingCallEnded)) == 2)
    assert events[3:] == [IncomingCall(None), IncomingCallEnded(None)]


async def test_unplug_and_replug(
    ready: tuple[GsmModem, Events], emulator: ModemEmulator, links: LinkRegistry
) -> None:
    modem, events = ready
    emulator.unplug()
    await eventually(lambda: events.of(ModemGone))
    assert not modem.ready
    [link] = links.all()
    assert not link.up
    with pytest.raises(ModemUnavailable, match="not available"):
        await modem.send_pdu(SUBMIT, 23)
    emulator.plug()  # the by-id symlink points at a new pty
    await eventually(lambda: len(events.of(ModemReady)) == 2)
    assert emulator.commands == INIT + INIT  # the fresh modem was initialised again
    assert link.up
    assert await modem.send_pdu(SUBMIT, 23) == 1


async def test_a_hung_modem_is_reopened(make_modem, emulator: ModemEmulator) -> None:
    modem, events = await make_modem(command_timeout=0.05, max_timeouts=3)
    emulator.silent = True
    for _ in range(3):
        with pytest.raises(ModemError) as timed_out:
            await modem.query_signal()
        assert (timed_out.value.kind, timed_out.value.transient) == ("timeout", True)
    await eventually(lambda: events.of(ModemGone))
    assert events.of(ModemGone) == [ModemGone("no answer to 3 commands in a row")]
    emulator.silent = False
    await eventually(lambda: len(events.of(ModemReady)) == 2)


async def test_sms_storage_falls_back_to_the_phone(make_modem, emulator: ModemEmulator) -> None:
    emulator.storages = ("ME",)  # no SMS storage on this SIM
    modem, events = await make_modem()
    assert emulator.commands[9:11] == ['AT+CPMS="SM","SM","SM"', 'AT+CPMS="ME","ME","ME"']
    assert modem.storage == "ME"
    index = emulator.deliver_sms(DELIVER)
    await eventually(lambda: events.of(NewMessage))
    assert events.of(NewMessage) == [NewMessage("ME", index)]


async def test_a_cancelled_caller_does_not_jam_the_next_command(
    make_modem, emulator: ModemEmulator
) -> None:
    emulator.send_delay = 0.1
    modem, _ = await make_modem()
    send = asyncio.create_task(modem.send_pdu(SUBMIT, 23))
    await eventually(lambda: emulator.commands[-1] == "AT+CMGS=23")
    send.cancel()  # e.g. the HTTP client went away
    with pytest.raises(asyncio.CancelledError):
        await send
    await modem.query_signal()  # waits for the modem to finish the send first
    assert emulator.sent == [SUBMIT]
    assert emulator.commands[-2:] == ["AT+CMGS=23", "AT+CSQ"]


async def test_keep_alive_polls_the_signal(make_modem, emulator: ModemEmulator) -> None:
    modem, _ = await make_modem(poll_interval=0.01)
    emulator.rssi = 5
    await eventually(lambda: modem.status["signal_bars"] == 1)
    assert modem.status["signal_dbm"] == -103


async def test_commands_before_the_modem_is_ready_are_refused(make_modem) -> None:
    modem, _ = await make_modem(wait=False)
    with pytest.raises(ModemUnavailable):
        await modem.list_messages()
