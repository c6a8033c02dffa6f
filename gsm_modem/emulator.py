"""A fake GSM modem on a pseudo-terminal, for tests and for trying the service without one.

The driver opens ``path`` with pyserial as it would ``/dev/serial/by-id/...``: a symlink
to the pty's slave side. ``unplug()`` closes the pty and leaves the symlink dangling;
``plug()`` makes a new pty with a fresh modem behind the same symlink (the SIM's messages
stay: they are on the SIM). It runs in the asyncio loop that creates it, next to the
driver: the master side is read with ``add_reader``.

What it speaks: ATZ, ATE0/1, AT+CMEE, AT+CPIN (PIN, 3 tries then PUK), AT+CGMI/CGMM/CGSN/
CIMI, AT+CMGF=0, AT+CPMS, AT+CNMI (``+CMTI``/``+CMT`` for messages, ``+CDS`` for status
reports), AT+CLIP, AT+CREG, AT+CSQ, AT+COPS?, AT+CMGS (``> `` prompt, PDU until Ctrl-Z,
ESC cancels), AT+CMGR/CMGL/CMGD. Errors are numeric, worded or plain by AT+CMEE.

``python -m gsm_modem.emulator`` prints the path and runs until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import tempfile
import tty
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gsm_modem.errors import CME_ERRORS, CMS_ERRORS

_EXTENDED = re.compile(r"^AT(\+[A-Z]+)(\?|=(.*))?$", re.IGNORECASE)
_CTRL_Z, _ESC = b"\x1a", b"\x1b"


@dataclass
class StoredMessage:
    status: int  # 0 received unread, 1 received read
    pdu: str


def status_report_pdu(reference: int, recipient: bytes, when: datetime, status: int = 0) -> str:
    """An SMS-STATUS-REPORT (TS 23.040 §9.2.2.3) with no SMSC address, as hex.

    ``recipient`` is the TP-DA of the submitted message as it was sent (length in digits,
    type of number, BCD digits); ``status`` 0 is "received by the recipient".
    """
    stamp = _semi_octets(f"{when:%y%m%d%H%M%S}00")  # the time zone: UTC
    # First octet 0x06: TP-MTI status report, TP-MMS "no more messages".
    tpdu = bytes([0x06, reference]) + recipient + stamp + stamp + bytes([status])
    return "00" + tpdu.hex().upper()


def tpdu_length(pdu_hex: str) -> int:
    """The TPDU's length in octets: the PDU without its leading SMSC address."""
    return len(pdu_hex) // 2 - 1 - int(pdu_hex[:2], 16)


def _semi_octets(digits: str) -> bytes:
    return bytes.fromhex("".join(digits[i + 1] + digits[i] for i in range(0, len(digits), 2)))


class ModemEmulator:
    def __init__(
        self,
        *,
        echo: bool = True,
        pin: str | None = None,
        send_delay: float = 3.0,
        status_report_delay: float = 1.0,
        ring_interval: float = 2.0,
        manufacturer: str = "Emulated",
        model: str = "GSM Modem 1",
        imei: str = "356938035643809",
        imsi: str = "250011234567890",
        operator: str = "MegaFon",
        rssi: int = 20,
        storages: tuple[str, ...] = ("SM", "ME"),
        capacity: int = 30,
    ) -> None:
        self.default_echo = echo
        self.pin = pin
        self.send_delay = send_delay
        self.status_report_delay = status_report_delay
        self.ring_interval = ring_interval
        self.manufacturer, self.model, self.imei, self.imsi = manufacturer, model, imei, imsi
        self.operator = operator
        self.rssi = rssi
        self.registration = 1  # +CREG <stat>: registered, home network
        self.storages = storages
        self.capacity = capacity
        self.messages: dict[int, StoredMessage] = {}  # the SIM's storage, by index
        self.commands: list[str] = []  # every command line received, for assertions
        self.sent: list[str] = []  # PDUs of the messages sent with AT+CMGS
        self.rings = 0  # RINGs sent
        self.silent = False  # a hung modem: commands are read but never answered
        self._dir = Path(tempfile.mkdtemp(prefix="gsm-emulator-"))
        self.path = self._dir / "usb-Emulated_GSM_Modem-if00-port0"
        self._failures: list[list] = []  # [prefix, error line, count left]
        self._urcs: list[tuple[str, str]] = []  # (prefix, URC line)
        self._next_reference = 1
        self._fds: tuple[int, int] | None = None
        self._tasks: set[asyncio.Task] = set()
        self._server: asyncio.Task | None = None
        self._ringer: asyncio.Task | None = None
        self._reset()

    async def __aenter__(self) -> ModemEmulator:
        self.plug()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    # -- the test's controls ---------------------------------------------------------

    def plug(self) -> None:
        """A new pty behind ``path``, and a freshly powered modem (the SIM locked again)."""
        if self._fds is not None:
            raise RuntimeError("already plugged")
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no CR/LF translation by the tty layer
        os.set_blocking(master, False)  # a full pty buffer drops bytes like a UART
        # We keep the slave open too: otherwise the master reads EIO while the driver
        # has the port closed.
        self._fds = (master, slave)
        self._point(os.ttyname(slave))
        self._reset()
        self._locked = self.pin is not None
        self._pin_tries = 3
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        loop.add_reader(master, self._readable, reader)
        self._server = loop.create_task(self._serve(reader))

    def unplug(self) -> None:
        """Pull the cable: the pty closes, the symlink dangles, ringing stops."""
        if self._fds is None:
            return
        for task in [self._server, self._ringer, *self._tasks]:
            if task is not None:
                task.cancel()
        master, slave = self._fds
        self._fds = None
        asyncio.get_running_loop().remove_reader(master)
        os.close(master)
        os.close(slave)
        self._point(self._dir / "unplugged")

    def close(self) -> None:
        self.unplug()
        shutil.rmtree(self._dir, ignore_errors=True)

    def deliver_sms(self, pdu_hex: str) -> int:
        """An incoming SMS-DELIVER (hex, with its SMSC address): stored on the SIM and
        announced with +CMTI (AT+CNMI mt=1), or routed with +CMT (mt=2, not stored)."""
        if self._mt == 2:
            self._write(f"\r\n+CMT: ,{tpdu_length(pdu_hex)}\r\n{pdu_hex.upper()}\r\n".encode())
            return 0
        index = next(i for i in range(1, self.capacity + 1) if i not in self.messages)
        self.messages[index] = StoredMessage(0, pdu_hex.upper())
        if self._mt == 1:
            self._write(f'\r\n+CMTI: "{self._storage}",{index}\r\n'.encode())
        return index

    def ring(self, number: str | None) -> None:
        """An incoming call: RING (and +CLIP after AT+CLIP=1; number None: withheld)
        every ``ring_interval`` seconds until ``hang_up()``."""
        self.hang_up()
        self._ringer = self._spawn(self._ring(number))

    def hang_up(self) -> None:
        if self._ringer is not None:
            self._ringer.cancel()
            self._ringer = None

    def set_registration(self, stat: int) -> None:
        self.registration = stat
        if self._creg:
            self._write(f"\r\n+CREG: {stat}\r\n".encode())

    def fail_next(self, prefix: str, error: str, count: int = 1) -> None:
        """The next ``count`` commands starting with ``prefix`` answer ``error`` (e.g.
        "+CMS ERROR: 38") instead; AT+CMGS after its prompt, PDU and delay."""
        self._failures.append([prefix.upper(), error, count])

    def inject_urc(self, prefix: str, urc: str) -> None:
        """The next command starting with ``prefix`` has ``urc`` between its answer lines
        and its final result."""
        self._urcs.append((prefix.upper(), urc))

    # -- the modem -------------------------------------------------------------------

    def _reset(self) -> None:
        self.echo = self.default_echo
        self._cmee = 0
        self._mt = self._ds = 0
        self._clip = False
        self._creg = 0
        self._storage = self.storages[0]

    def _point(self, target: str | Path) -> None:
        link = self._dir / "link.new"
        os.symlink(target, link)
        os.replace(link, self.path)  # atomic: the path is never missing, only dangling

    def _readable(self, reader: asyncio.StreamReader) -> None:
        assert self._fds is not None
        with contextlib.suppress(BlockingIOError):
            reader.feed_data(os.read(self._fds[0], 4096))

    def _write(self, data: bytes) -> None:
        if self._fds is not None:
            # Beyond the pty's buffer (nobody reading) bytes are dropped, like a UART's.
            with contextlib.suppress(OSError):
                os.write(self._fds[0], data)

    def _spawn(self, coroutine: Coroutine) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _serve(self, reader: asyncio.StreamReader) -> None:
        while True:
            raw = await reader.readuntil(b"\r")
            if self.echo:
                self._write(raw)
            text = raw.decode("ascii", "replace").strip(" \r\n\x1b")
            start = text.upper().find("AT")
            if start < 0:
                continue
            command = text[start:]
            self.commands.append(command)
            if self.silent:
                continue
            try:
                if command.upper().startswith("AT+CMGS="):
                    lines, final = await self._send(reader, command)
                else:
                    failure = self._failure(command)
                    lines, final = failure if failure is not None else self._execute(command)
            except ValueError:  # a malformed number in the command
                lines, final = [], "ERROR"
            self._respond(command, lines, final)

    def _respond(self, command: str, lines: list[str], final: str) -> None:
        for prefix, urc in self._urcs:
            if command.upper().startswith(prefix):
                self._urcs.remove((prefix, urc))
                lines = [*lines, urc]
                break
        self._write("".join(f"\r\n{line}\r\n" for line in [*lines, final]).encode())

    def _failure(self, command: str) -> tuple[list[str], str] | None:
        for failure in self._failures:
            prefix, error, count = failure
            if command.upper().startswith(prefix):
                if count <= 1:
                    self._failures.remove(failure)
                failure[2] = count - 1
                return [], error
        return None

    def _error(self, kind: str, code: int) -> str:
        if self._cmee == 0:
            return "ERROR"
        table = CMS_ERRORS if kind == "cms" else CME_ERRORS
        return f"+{kind.upper()} ERROR: {code if self._cmee == 1 else table[code]}"

    def _execute(self, command: str) -> tuple[list[str], str]:
        upper = command.upper()
        if upper in ("AT", "ATZ", "ATE", "ATE0", "ATE1"):
            if upper == "ATZ":
                self._reset()
            elif upper != "AT":
                self.echo = upper == "ATE1"
            return [], "OK"
        match = _EXTENDED.match(command)
        handler = match and getattr(self, f"_at_{match[1][1:].lower()}", None)
        if not match or handler is None:
            return [], "ERROR"
        if self._locked and match[1].upper() not in ("+CMEE", "+CPIN", "+CGMI", "+CGMM", "+CGSN"):
            sms = match[1].upper() in ("+CMGF", "+CPMS", "+CNMI", "+CMGR", "+CMGL", "+CMGD")
            return [], self._error("cms", 311) if sms else self._error("cme", 11)
        return handler(match[2] == "?", match[3])

    def _at_cmee(self, query: bool, arg: str | None) -> tuple[list[str], str]:
        if query:
            return [f"+CMEE: {self._cmee}"], "OK"
        self._cmee = int(arg or 0)
        return [], "OK"

    def _at_cpin(self, query: bool, arg: str | None) -> tuple[list[str], str]:
        if query:
            state = "READY" if not self._locked else "SIM PIN" if self._pin_tries else "SIM PUK"
            return [f"+CPIN: {state}"], "OK"
        if not self._locked:
            return [], self._error("cme", 3)
        if not self._pin_tries:
            return [], self._error("cme", 12)
        if (arg or "").strip('"') != self.pin:
            self._pin_tries -= 1
            return [], self._error("cme", 16)
        self._locked = False
        return [], "OK"

    def _at_cgmi(self, query: bool, arg: str | None) -> tuple[list[str], str]:
        return [self.manufacturer], "OK"

    def _at_cgmm(self, query: bool, arg: str | None) -> tuple[list[str], str]:
        return [self.model], "OK"

    def _at_cgsn(self, query: bool, arg: str | None) -> tuple[list[str], str]:
        return [self.imei], "OK"

    def _at_cimi(self, query: bool, arg: str | None) -> tuple[list[str], str]:
        return [self.imsi], "OK"

    def _at_cmgf(self, query: bool, arg: str | None) -> tuple[list[str], str]:
        return ([], "OK") if query or arg == "0" else ([], self._error("cms", 303))

    def _at_cpms(self, query: bool, arg: str | None) -> tuple[list[str], str]:
        names = [name.strip().strip('"') for name in (arg or "").split(",")] if arg else []
        if any(name not in self.storages for name in names):
            return [], self._error("cms", 302)
        if names:
            self._storage = names[-1]  # <mem3>: where incoming messages go
        used = f"{len(self.messages)},{self.capacity}"
        return [f"+CPMS: {used},{used},{used}"], "OK"

    def _at_cnmi(self, query: bool, arg: str | None) -> tuple[list[str], str]:
        if query:
            return [f"+CNMI: 2,{self._mt},0,{self._ds},0"], "OK"
        fields = [int(f) if f else 0 for f in (arg or "").split(",")] + [0] * 5
        self._mt, self._ds = fields[1], fields[3]
        return [], "OK"

    def _at_clip(self, query: bool, arg: str | None) -> tuple[list[str], str]:
        if query:
            return [f"+CLIP: {int(self._clip)},1"], "OK"
        self._clip = arg == "1"
        return [], "OK"

    def _at_creg(self, query: bool, arg: str | None) -> tuple[list[str], str]:
        if query:
            return [f"+CREG: {self._creg},{self.registration}"], "OK"
        self._creg = int(arg or 0)
        return [], "OK"

    def _at_csq(self, query: bool, arg: str | None) -> tuple[list[str], str]:
        return [f"+CSQ: {self.rssi},99"], "OK"

    def _at_cops(self, query: bool, arg: str | None) -> tuple[list[str], str]:
        registered = self.registration in (1, 5)
        return [f'+COPS: 0,0,"{self.operator}",2' if registered else "+COPS: 0"], "OK"

    def _at_cmgr(self, query: bool, arg: str | None) -> tuple[list[str], str]:
        message = self.messages.get(int(arg or 0))
        if message is None:
            return [], self._error("cms", 321)
        lines = [f"+CMGR: {message.status},,{tpdu_length(message.pdu)}", message.pdu]
        message.status = 1
        return lines, "OK"

    def _at_cmgl(self, query: bool, arg: str | None) -> tuple[list[str], str]:
        stat = int(arg or 0)
        lines = []
        for index, message in sorted(self.messages.items()):
            if stat in (4, message.status):
                lines += [
                    f"+CMGL: {index},{message.status},,{tpdu_length(message.pdu)}",
                    message.pdu,
                ]
                message.status = 1
        return lines, "OK"

    def _at_cmgd(self, query: bool, arg: str | None) -> tuple[list[str], str]:
        index, _, flag = (arg or "").partition(",")
        if flag.strip() == "4":
            self.messages.clear()
        else:
            self.messages.pop(int(index), None)
        return [], "OK"

    async def _send(self, reader: asyncio.StreamReader, command: str) -> tuple[list[str], str]:
        """AT+CMGS=<length>: the prompt, the PDU up to Ctrl-Z (ESC cancels), the network."""
        length = int(command[8:])
        if self._locked:
            return [], self._error("cms", 311)
        self._write(b"\r\n> ")
        pdu = b""
        while (char := await reader.readexactly(1)) not in (_CTRL_Z, _ESC):
            if self.echo:
                self._write(char)
            pdu += char
        if char == _ESC:
            return [], "OK"
        await asyncio.sleep(self.send_delay)
        failure = self._failure(command)
        if failure is not None:
            return failure
        text = pdu.decode("ascii", "replace").strip()
        try:
            tpdu = bytes.fromhex(text)[1 + int(text[:2], 16) :]
        except ValueError:
            tpdu = b""
        if len(tpdu) < 4 or len(tpdu) != length:
            return [], self._error("cms", 304)
        reference, self._next_reference = self._next_reference, self._next_reference % 255 + 1
        self.sent.append(text.upper())
        if tpdu[0] & 0x20:  # TP-SRR: the sender asked for a status report
            recipient = tpdu[2 : 4 + (tpdu[2] + 1) // 2]
            self._spawn(self._status_report(reference, recipient))
        return [f"+CMGS: {reference}"], "OK"

    async def _status_report(self, reference: int, recipient: bytes) -> None:
        await asyncio.sleep(self.status_report_delay)
        if self._ds == 1:
            pdu = status_report_pdu(reference, recipient, datetime.now(UTC))
            self._write(f"\r\n+CDS: {tpdu_length(pdu)}\r\n{pdu}\r\n".encode())

    async def _ring(self, number: str | None) -> None:
        while True:
            self._write(b"\r\nRING\r\n")
            self.rings += 1
            if self._clip:
                toa = 145 if (number or "").startswith("+") else 129 if number else 128
                self._write(f'\r\n+CLIP: "{number or ""}",{toa},"",0,"",0\r\n'.encode())
            await asyncio.sleep(self.ring_interval)


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake GSM modem on a pseudo-terminal.")
    parser.add_argument("--pin", help="the SIM asks for this PIN")
    parser.add_argument("--no-echo", action="store_true", help="start with echo off (ATE0)")
    parser.add_argument("--send-delay", type=float, default=3.0, help="seconds AT+CMGS takes")
    args = parser.parse_args()

    async def run() -> None:
        async with ModemEmulator(
            echo=not args.no_echo, pin=args.pin, send_delay=args.send_delay
        ) as modem:
            print(modem.path, flush=True)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    main()
