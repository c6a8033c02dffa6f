"""A simulated Avaya IP Office sending SMDR, for tests and the demo.

``print_day`` writes a day of calls (``pbx_adapters.smdr.day``) as IP Office segments,
with a few broken lines, and says what each call must come out as. ``IpOfficeSmdr``
sends them over TCP either way round: ``listen`` (its SMDR IP Address is 0.0.0.0: it
listens, the service connects) or ``connect`` (it connects to the service's address,
and buffers up to 3,000 records while it cannot).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import random
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from cti.phone import to_e164
from pbx_adapters.smdr.day import DayCall, Expected

BUFFER = 3000  # records IP Office keeps while nobody takes them
TRUNK_PREFIX = "9"
NAMES = {"101": "Анна Петрова", "102": "გიორგი ბერიძე", "103": "សុភា ចាន់", "104": "Jane Smith"}


def segment(
    start: datetime,
    call_id: int,
    *,
    caller: str,
    inbound: bool,
    called: str,
    party1: tuple[str, str],
    party2: tuple[str, str],
    connected: int = 0,
    ring: int = 0,
    internal: bool = False,
    more: bool = False,
    hold: int = 0,
    targeted: str = "",
    r11: bool = False,
) -> str:
    """One SMDR record: fields 1-30 (and R11's five more)."""
    fields = [
        f"{start:%Y/%m/%d %H:%M:%S}",
        f"{connected // 3600:02d}:{connected % 3600 // 60:02d}:{connected % 60:02d}",
        str(ring),
        caller,
        "I" if inbound else "O",
        called,
        called,
        "",
        "1" if internal else "0",
        str(call_id),
        "1" if more else "0",
        *party1,
        *party2,
        str(hold),
        "0",
        "",
        "n/a",
        *[""] * 8,  # 20-27: advice of charge
        "FU" if targeted else "",
        "",
        targeted,
    ]
    if r11:
        fields += ["192.168.0.10", str(call_id * 10 + 1), "192.168.0.10", str(call_id * 10 + 2)]
        fields.append(f"{start + timedelta(seconds=connected + ring):%Y/%m/%d %H:%M:%S}")
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(fields)
    return out.getvalue()


@dataclass
class PrintedDay:
    lines: list[str]
    expected: list[Expected]
    bad_lines: int = 0


def print_day(calls: list[DayCall], region: str = "RU", seed: int = 11) -> PrintedDay:
    rng = random.Random(seed)  # noqa: S311 (a simulated day, not a secret)
    out = PrintedDay([], [])
    call_id = 1_000_000

    def e164(number: str) -> str:
        return to_e164(number, region) or number

    def ext(number: str) -> tuple[str, str]:
        return f"E{number}", NAMES.get(number, f"Extn{number}")

    line = ("T9001", "Line 1.1")
    for n, call in enumerate(calls):
        call_id += 1
        total = call.ring + call.talk + call.talk_after
        start = call.ended - timedelta(seconds=total)
        r11 = n % 2 == 0
        inbound = {"caller": call.number, "inbound": True, "called": call.did, "r11": r11}
        if call.kind in ("answered", "missed", "hung_up"):
            out.lines.append(
                segment(
                    start,
                    call_id,
                    party1=ext(call.extension),
                    party2=line,
                    connected=call.talk,
                    ring=call.ring,
                    hold=rng.choice([0, 0, 0, 5]) if call.talk else 0,
                    **inbound,
                )
            )
            answered = call.kind == "answered"
            outcome = {"answered": "answered", "missed": "no_answer", "hung_up": "unknown"}
            out.expected.append(
                Expected(
                    "inbound",
                    e164(call.number),
                    outcome[call.kind],
                    call.kind == "missed",
                    call.extension if answered else None,
                )
            )
        elif call.kind == "transferred":
            out.lines.append(
                segment(
                    start,
                    call_id,
                    party1=ext(call.extension),
                    party2=line,
                    connected=call.talk,
                    ring=call.ring,
                    more=True,
                    **inbound,
                )
            )
            out.lines.append(
                segment(
                    start,
                    call_id,
                    party1=ext(call.other_extension),
                    party2=line,
                    connected=call.talk_after,
                    **inbound,
                )
            )
            out.expected.append(
                Expected(
                    "inbound",
                    e164(call.number),
                    "answered",
                    False,
                    call.other_extension,
                    transferred_to=call.other_extension,
                )
            )
        elif call.kind in ("forwarded", "voicemail"):
            out.lines.append(
                segment(
                    start,
                    call_id,
                    party1=ext(call.extension),
                    party2=line,
                    ring=call.ring,
                    more=True,
                    **inbound,
                )
            )
            if call.kind == "forwarded":
                second = segment(
                    start,
                    call_id,
                    party1=("T9002", "Line 2.1"),
                    party2=line,
                    connected=call.talk,
                    targeted=call.forward_to,
                    **inbound,
                )
                expected = Expected(
                    "inbound",
                    e164(call.number),
                    "answered",
                    False,
                    None,
                    transferred_to=e164(call.forward_to),
                )
            else:
                second = segment(
                    start,
                    call_id,
                    party1=("V9501", "VM Channel 1"),
                    party2=line,
                    connected=20,
                    **inbound,
                )
                expected = Expected("inbound", e164(call.number), "no_answer", True, None)
            out.lines.append(second)
            out.expected.append(expected)
        elif call.kind in ("dialled", "dialled_unanswered"):
            out.lines.append(
                segment(
                    start,
                    call_id,
                    caller=call.extension,
                    inbound=False,
                    called=TRUNK_PREFIX + call.number,
                    party1=ext(call.extension),
                    party2=("T9002", "Line 2.1"),
                    connected=call.talk,
                    ring=call.ring,
                    r11=r11,
                )
            )
            outcome = "answered" if call.talk else "no_answer"
            out.expected.append(
                Expected("outbound", e164(call.number), outcome, False, None, call.extension)
            )
        elif call.kind == "internal":
            out.lines.append(
                segment(
                    start,
                    call_id,
                    caller=call.extension,
                    inbound=False,
                    called=call.other_extension,
                    party1=ext(call.extension),
                    party2=ext(call.other_extension),
                    connected=call.talk,
                    ring=call.ring,
                    internal=True,
                    r11=r11,
                )
            )
            out.expected.append(
                Expected("internal", None, "answered", False, call.other_extension, call.extension)
            )
        if n % 89 == 40:  # a record cut short by a dropped line: what the PBX printed of it
            out.lines.append(out.lines[-1][:37])
            out.bad_lines += 1
        if n % 113 == 60:
            out.lines.append(f"2026/13/45 99:99:99,00:00:00,0,,I,,,,0,{call_id},0,E101,,T9001,,0,0")
            out.bad_lines += 1
    return out


@dataclass
class IpOfficeSmdr:
    """IP Office's SMDR output over TCP, on 127.0.0.1."""

    mode: Literal["listen", "connect"]
    target_port: int = 0  # connect: the service's port
    port: int = 0  # listen: its own (0: a free one)
    buffer: deque[bytes] = field(default_factory=lambda: deque(maxlen=BUFFER))
    connections: int = 0
    _server: asyncio.Server | None = None
    _writer: asyncio.StreamWriter | None = None
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.mode == "listen":
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
            self.port = self._server.sockets[0].getsockname()[1]
        else:
            self._task = asyncio.get_running_loop().create_task(self._connect_out())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.drop()
        if self._server is not None:
            self._server.close()

    def send(self, line: str) -> None:
        self.send_bytes((line + "\r\n").encode())

    def send_bytes(self, data: bytes) -> None:
        if self._writer is None or self._writer.is_closing():
            self.buffer.append(data)
        else:
            self._writer.write(data)

    def drop(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    @property
    def linked(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    def _linked(self, writer: asyncio.StreamWriter) -> None:
        self.drop()
        self._writer = writer
        self.connections += 1
        while self.buffer:
            writer.write(self.buffer.popleft())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._linked(writer)
        with contextlib.suppress(OSError):
            await reader.read()
        if self._writer is writer:
            self._writer = None

    async def _connect_out(self) -> None:
        while True:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            except OSError:
                await asyncio.sleep(0.2)
                continue
            self._linked(writer)
            with contextlib.suppress(OSError):
                await reader.read()
            if self._writer is writer:
                self._writer = None
            await asyncio.sleep(0.2)
