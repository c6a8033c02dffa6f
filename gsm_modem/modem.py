"""The asyncio driver of one GSM modem: the serial port, the init sequence, SMS commands
and unsolicited events, around the sans-I/O ``AtEngine``.

The port is opened with pyserial-asyncio: pyserial configures it, and its file
descriptor sits in the event loop's selector like a socket (no reader thread, no
polling). A pulled USB cable or a closed pty makes the descriptor readable with EOF or
EIO, which pyserial turns into an error and the transport into ``connection_lost``: the
link goes down, and the same loop that opened the port retries with backoff until the
``/dev/serial/by-id/...`` name comes back, then runs the init sequence again.

Commands never interleave: one lock, one command in the engine at a time.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import logging
import re
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass

import serial_asyncio

from cti.backoff import Backoff
from cti.config import ModemConfig
from cti.links import LinkRegistry
from cti.modem import ModemUnavailable  # raised here, caught by the core
from cti.tasks import TaskMonitor
from gsm_modem.at import AtEngine, CommandResult, Event, Urc, Write, split_args
from gsm_modem.errors import ModemError
from gsm_modem.sms import SmsOverPdu

log = logging.getLogger("cti.modem")

REGISTRATION_STATES = {
    0: "not registered",
    1: "home",
    2: "searching",
    3: "denied",
    4: "unknown",
    5: "roaming",
}
SIGNAL_BARS = (2, 10, 15, 20)  # rssi where 1, 2, 3 and 4 bars begin
_PIN_COMMAND = re.compile(r"^(AT\+CPIN=).*", re.IGNORECASE)
_CMGS = re.compile(r"^\+CMGS:\s*(\d+)")
_CMGL = re.compile(r"^\+CMGL:\s*(\d+)\s*,\s*(\d+)")


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message (+CMTI) or status report (+CDSI) stored at ``index``: read it, then
    delete it."""

    storage: str
    index: int


@dataclass(frozen=True, slots=True)
class StatusReportPdu:
    pdu_hex: str  # +CDS: the report itself, not stored on the SIM


@dataclass(frozen=True, slots=True)
class MessagePdu:
    pdu_hex: str  # +CMT: a message routed straight to us (class 0), not stored


@dataclass(frozen=True, slots=True)
class IncomingCall:
    number: str | None  # None: withheld or not sent


@dataclass(frozen=True, slots=True)
class IncomingCallEnded:
    number: str | None


@dataclass(frozen=True, slots=True)
class RegistrationChanged:
    registered: bool
    state: str  # REGISTRATION_STATES


@dataclass(frozen=True, slots=True)
class ModemReady:
    identity: dict[str, str]


@dataclass(frozen=True, slots=True)
class ModemGone:
    reason: str


ModemEvent = (
    NewMessage
    | StatusReportPdu
    | MessagePdu
    | IncomingCall
    | IncomingCallEnded
    | RegistrationChanged
    | ModemReady
    | ModemGone
)


@dataclass
class _Ringing:
    watcher: asyncio.Task | None = None
    number: str | None = None
    rings: int = 0
    announced: bool = False


class _PortSession(asyncio.Protocol):
    """One opening of the port: its transport, its engine, the command in flight."""

    def __init__(self, modem: GsmModem) -> None:
        loop = asyncio.get_running_loop()
        self.modem = modem
        self.transport: asyncio.Transport | None = None
        self.engine = AtEngine()
        self.result: asyncio.Future[CommandResult] | None = None  # of the engine's command
        self.lost: asyncio.Future[str] = loop.create_future()  # why it ended
        self.closed: asyncio.Future[None] = loop.create_future()

    def data_received(self, data: bytes) -> None:
        self.modem._handle(self, self.engine.receive(data))

    def connection_lost(self, exc: Exception | None) -> None:
        self.end(f"port lost: {exc}" if exc else "port closed")
        if self.result is not None:
            self.result.cancel()  # the waiter raises ModemUnavailable
        self.closed.set_result(None)

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def end(self, reason: str) -> None:
        if not self.lost.done():
            self.lost.set_result(reason)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()


class GsmModem(SmsOverPdu):
    """``on_event`` is called in the event loop with each ``ModemEvent``; it must not block
    (``EventBus.publish_nowait``, a queue). Link state goes to ``links`` when given. As
    ``SmsOverPdu``, the core's ``SmsModem`` (cti.modem): the outbox sends through it."""

    def __init__(
        self,
        config: ModemConfig,
        *,
        on_event: Callable[[ModemEvent], object],
        clock: Callable[[], float] = time.monotonic,
        links: LinkRegistry | None = None,
        command_timeout: float = 10.0,
        max_timeouts: int = 3,  # in a row: the port is reopened
        ring_gap: float = 7.0,  # no RING for this long: the caller gave up
        poll_interval: float | None = 60.0,  # AT+CSQ keep-alive; a hung modem times out
        reconnect_min: float = 0.5,
        reconnect_max: float = 30.0,
        tasks: TaskMonitor | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.tasks = tasks or TaskMonitor()
        self._on_event = on_event
        self._clock = clock
        self._links = links
        self.command_timeout = command_timeout
        self.max_timeouts = max_timeouts
        self.ring_gap = ring_gap
        self.poll_interval = poll_interval
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.storage = "SM"  # where messages are stored: "SM" (SIM) or "ME" (the modem)
        self._identity: dict[str, str] = {}
        self._status: dict[str, object] = {
            "signal_dbm": None,
            "signal_bars": 0,
            "registration": "unknown",
            "operator": None,
        }
        self._port: _PortSession | None = None
        self._ready = asyncio.Event()
        self._down_reason = "not connected yet"
        self._lock = asyncio.Lock()
        self._last_command = ""  # for the link's detail when the init fails
        self._timeouts = 0
        self._pin_rejected = False
        self._ringing: _Ringing | None = None
        self._last_ring = 0.0
        self._tasks: set[asyncio.Task] = set()
        self._runner: asyncio.Task | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        self._runner = self.tasks.spawn(self._run(), f"modem-{self.name}")

    async def stop(self) -> None:
        tasks = [t for t in (self._runner, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._ready.clear()
        port, self._port = self._port, None
        if port is not None:
            port.end("stopped")
            await port.closed

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def wait_ready(self) -> None:
        await self._ready.wait()

    @property
    def identity(self) -> dict[str, str]:
        """maker, model, imei, imsi: as the modem last told them."""
        return dict(self._identity)

    @property
    def status(self) -> dict[str, object]:
        """ready, signal_dbm (None: unknown), signal_bars (0-4), registration, operator."""
        return {"ready": self.ready, **self._status}

    async def _run(self) -> None:
        backoff = Backoff(first=self.reconnect_min, most=self.reconnect_max)
        while True:
            try:
                await self._open()
                await self._initialise()
            except Exception as e:
                if isinstance(e, ModemError):
                    reason = f"{self._last_command}: {e}"
                elif isinstance(e, ModemUnavailable):
                    reason = str(e)
                else:  # SerialException is an OSError
                    if not isinstance(e, OSError):
                        log.exception("modem %s: initialisation failed", self.name)
                    reason = f"{type(e).__name__}: {e}"
                await self._down(reason)
                # Jitter: several modems on one USB hub do not all retry at once.
                await asyncio.sleep(backoff.next_delay())
                continue
            backoff.reset()
            assert self._port is not None
            self._ready.set()
            log.info("modem %s ready: %s", self.name, self._identity)
            self._emit(ModemReady(self.identity))
            await self._report(True, self._describe())
            poller = self._spawn(self._poll()) if self.poll_interval else None
            reason = await self._port.lost
            if poller is not None:
                poller.cancel()
            await self._down(reason)

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        transport, port = await serial_asyncio.create_serial_connection(
            loop,
            lambda: _PortSession(self),
            self.config.port,
            baudrate=self.config.baudrate,
            exclusive=True,  # a second cti (a probe while the service runs) is refused
        )
        port.transport = transport  # now: connection_made comes a loop turn later
        self._port = port
        self._timeouts = 0

    async def _down(self, reason: str) -> None:
        was_ready = self._ready.is_set()
        self._ready.clear()
        self._down_reason = reason
        port, self._port = self._port, None
        if port is not None:
            port.end(reason)
        if was_ready:
            log.warning("modem %s gone: %s", self.name, reason)
            self._emit(ModemGone(reason))
        else:
            log.info("modem %s not available: %s", self.name, reason)
        await self._report(False, reason)

    async def _report(self, up: bool, detail: str) -> None:
        if self._links is not None:
            await self._links.report(self.name, up, detail)

    def _describe(self) -> str:
        parts = [
            self._identity.get("maker"),
            self._identity.get("model"),
            self._status["registration"],
            self._status["operator"],
        ]
        return ", ".join(str(part) for part in parts if part)

    # -- init ------------------------------------------------------------------------

    async def _initialise(self) -> None:
        assert self._port is not None
        self._port.write(b"\x1b")  # ends a PDU prompt a previous run left open
        for command in ("ATZ", "ATE0", "AT+CMEE=1"):
            await self._command(command)
        await self._unlock_sim()
        self._identity = {
            "maker": await self._value("AT+CGMI"),
            "model": await self._value("AT+CGMM"),
            "imei": await self._value("AT+CGSN"),
            "imsi": await self._value("AT+CIMI"),
        }
        await self._command("AT+CMGF=0")
        self.storage = await self._select_storage()
        try:
            await self._command("AT+CNMI=2,1,0,1,0")
        except ModemError:  # no routed +CDS on this modem: reports are stored, +CDSI
            await self._command("AT+CNMI=2,1,0,2,0")
        for command in ("AT+CLIP=1", "AT+CREG=1"):
            await self._command(command)
        state = split_args(await self._value("AT+CREG?"))  # <n>,<stat>
        self._registration(int(state[1]) if len(state) > 1 and state[1].isdigit() else 4)
        self._signal(await self._value("AT+CSQ"))
        operator = split_args(await self._value("AT+COPS?"))  # <mode>,<format>,<name>
        self._status["operator"] = operator[2] if len(operator) > 2 else None

    async def _unlock_sim(self) -> None:
        state = await self._value("AT+CPIN?")
        if state == "READY":
            return
        pin = self.config.pin.get_secret_value() if self.config.pin else None
        if state != "SIM PIN":
            raise ModemUnavailable(f"the SIM asks for {state}")
        if pin is None:
            raise ModemUnavailable("the SIM asks for a PIN and none is configured")
        if self._pin_rejected:
            # Every wrong try brings the PUK closer: never repeat a refused PIN.
            raise ModemUnavailable("the SIM refused the configured PIN; fix it and restart")
        try:
            await self._command(f"AT+CPIN={pin}")
        except ModemError as e:
            self._pin_rejected = not e.transient
            raise
        if await self._value("AT+CPIN?") != "READY":
            raise ModemUnavailable("the SIM is not ready after its PIN")

    async def _select_storage(self) -> str:
        try:
            await self._command('AT+CPMS="SM","SM","SM"')
            return "SM"
        except ModemError:
            await self._command('AT+CPMS="ME","ME","ME"')
            return "ME"

    # -- commands --------------------------------------------------------------------

    async def command(
        self,
        text: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (the engine's deadline: see _command)
        pdu: str | None = None,
    ) -> CommandResult:
        """Any AT command; ModemError if the modem refuses it or does not answer,
        ModemUnavailable while the modem is not connected and initialised."""
        if not self._ready.is_set():
            raise ModemUnavailable(f"modem {self.name} is not available: {self._down_reason}")
        return await self._command(text, timeout=timeout, pdu=pdu)

    async def send_pdu(
        self,
        pdu_hex: str,
        tpdu_length: int,
        timeout: float = 60.0,  # noqa: ASYNC109 (the engine's deadline: see _command)
    ) -> int:
        """Send one SMS-SUBMIT; returns its message reference (TP-MR) from ``+CMGS:``."""
        result = await self.command(f"AT+CMGS={tpdu_length}", timeout=timeout, pdu=pdu_hex)
        for line in result.lines:
            if match := _CMGS.match(line):
                return int(match[1])
        # Sent, most likely: not worth a retry that could deliver it twice.
        raise ModemError("plain", None, "no message reference in the answer", transient=False)

    async def read_message(self, index: int) -> str:
        """The PDU (hex) stored at ``index``; ModemError (+CMS 321) for an empty slot."""
        lines = (await self.command(f"AT+CMGR={index}")).lines
        if len(lines) < 2:  # some modems say OK for an empty slot
            raise ModemError.coded("cms", 321)
        return lines[-1]

    async def list_messages(self, stat: int = 4) -> list[tuple[int, int, str]]:
        """(index, status, PDU hex) of the stored messages. ``stat``: 4 all, 0 received
        unread, 1 received read, 2 and 3 stored unsent and sent. Listing marks them read."""
        lines = (await self.command(f"AT+CMGL={stat}")).lines
        return [
            (int(header[1]), int(header[2]), pdu)
            for line, pdu in itertools.pairwise(lines)
            if (header := _CMGL.match(line))
        ]

    async def delete_message(self, index: int) -> None:
        await self.command(f"AT+CMGD={index}")

    async def query_signal(self) -> dict[str, object]:
        """AT+CSQ: updates and returns ``status``."""
        self._signal(_value(await self.command("AT+CSQ")))
        return self.status

    async def _value(self, command: str) -> str:
        return _value(await self._command(command))

    async def _command(
        self,
        text: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        pdu: str | None = None,
    ) -> CommandResult:
        # The timeout is the engine's, not an asyncio.timeout around the wait: the engine
        # must drop the command when it lapses, or the next one could not be sent.
        shown = self._last_command = _PIN_COMMAND.sub(r"\1***", text)
        async with self._lock:
            port = self._port
            if port is None or port.lost.done():
                raise ModemUnavailable(f"modem {self.name} is not available: {self._down_reason}")
            if port.result is not None and not port.result.done():
                # A cancelled caller's command is still with the modem: let it end first.
                with contextlib.suppress(ModemError):
                    await self._answer(port)
            port.result = asyncio.get_running_loop().create_future()
            log.debug("modem %s <- %s", self.name, shown)
            timeout = timeout or self.command_timeout
            port.write(port.engine.command(text, timeout=timeout, now=self._clock(), pdu=pdu))
            answer = await self._answer(port)
        if answer.error is None:
            self._timeouts = 0
            return answer
        log.debug("modem %s: %s failed: %s", self.name, shown, answer.error)
        if answer.error.kind == "timeout":
            self._timeouts += 1
            log.warning("modem %s: no answer to %s", self.name, shown)
            if self._timeouts >= self.max_timeouts:
                port.end(f"no answer to {self._timeouts} commands in a row")
        raise answer.error

    async def _answer(self, port: _PortSession) -> CommandResult:
        """Wait for the engine's result, telling it the time when its deadline passes."""
        result = port.result
        assert result is not None
        while not result.done():
            deadline = port.engine.deadline
            wait = None if deadline is None else max(0.0, deadline - self._clock())
            await asyncio.wait([result], timeout=wait)
            if not result.done():
                self._handle(port, port.engine.check_timeouts(self._clock()))
        if result.cancelled():
            raise ModemUnavailable(f"modem {self.name}: {port.lost.result()}")
        return result.result()

    # -- events ----------------------------------------------------------------------

    def _handle(self, port: _PortSession, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Write):
                port.write(event.data)
            elif isinstance(event, CommandResult):
                if port.result is not None and not port.result.done():
                    port.result.set_result(event)
            elif isinstance(event, Urc):
                self._unsolicited(event)
            else:
                log.debug("modem %s: unexpected %r", self.name, event)

    def _unsolicited(self, urc: Urc) -> None:
        name, args = urc.name, urc.args
        if name in ("+CMTI", "+CDSI") and len(args) >= 2 and args[1].isdigit():
            self._emit(NewMessage(args[0], int(args[1])))
        elif name == "+CDS" and urc.pdu:
            self._emit(StatusReportPdu(urc.pdu))
        elif name == "+CMT" and urc.pdu:
            self._emit(MessagePdu(urc.pdu))
        elif name == "RING":
            self._ring(None, clip=False)
        elif name == "+CLIP" and args:
            self._ring(args[0] or None, clip=True)
        elif name == "NO CARRIER" and self._ringing is not None:  # the caller hung up
            assert self._ringing.watcher is not None
            self._ringing.watcher.cancel()
            self._end_call()
        elif name == "+CREG" and args and args[0].isdigit():
            self._emit(self._registration(int(args[0])))
        elif name == "^RSSI":  # Huawei: the same scale as +CSQ
            self._signal(",".join(args))
        else:
            log.debug("modem %s: unsolicited %s", self.name, urc.line)

    def _ring(self, number: str | None, *, clip: bool) -> None:
        """One IncomingCall per call, as soon as the caller id is known: at its +CLIP, or
        at the second RING when no +CLIP came (a modem that sends none)."""
        self._last_ring = self._clock()
        call = self._ringing
        if call is None:
            call = self._ringing = _Ringing()
            call.watcher = self._spawn(self._watch_ringing())
        if clip:
            call.number = number
        else:
            call.rings += 1
        if not call.announced and (clip or call.rings > 1):
            call.announced = True
            self._emit(IncomingCall(call.number))

    async def _watch_ringing(self) -> None:
        # Each RING moves the end further: sleep until the latest one is ring_gap old.
        while (left := self._last_ring + self.ring_gap - self._clock()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(left)
        self._end_call()

    def _end_call(self) -> None:
        call, self._ringing = self._ringing, None
        assert call is not None
        if not call.announced:  # a single RING and no caller id
            self._emit(IncomingCall(call.number))
        self._emit(IncomingCallEnded(call.number))

    async def _poll(self) -> None:
        assert self.poll_interval is not None
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.query_signal()
            except (ModemError, ModemUnavailable) as e:
                log.info("modem %s: signal poll failed: %s", self.name, e)

    def _registration(self, stat: int) -> RegistrationChanged:
        state = REGISTRATION_STATES.get(stat, "unknown")
        self._status["registration"] = state
        return RegistrationChanged(stat in (1, 5), state)

    def _signal(self, csq: str) -> None:
        """``<rssi>,<ber>``: rssi 0-31 is -113 dBm and up in steps of 2; 99 is unknown."""
        args = split_args(csq)
        rssi = int(args[0]) if args and args[0].isdigit() else 99
        known = rssi <= 31
        self._status["signal_dbm"] = -113 + 2 * rssi if known else None
        self._status["signal_bars"] = bisect.bisect_right(SIGNAL_BARS, rssi) if known else 0

    def _emit(self, event: ModemEvent) -> None:
        try:
            self._on_event(event)
        except Exception:
            log.exception("modem %s: the event handler failed on %r", self.name, event)

    def _spawn(self, coroutine: Coroutine) -> asyncio.Task:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _value(result: CommandResult) -> str:
    """The one answer line of a query without its "+NAME: " (AT+CGMI may say either)."""
    line = result.lines[0] if result.lines else ""
    prefix = result.command[2:].split("=")[0].rstrip("?").upper() + ":"
    return line[len(prefix) :].strip() if line.upper().startswith(prefix) else line
