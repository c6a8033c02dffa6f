"""A simulated Panasonic KX-TDA/NS printing SMDR, for tests and the demo.

``print_day`` prints a day of calls (``pbx_adapters.smdr.day``) as the PBX would, with
page headers, blank lines, log-in notices, RC/AN notices and a few broken lines, and
says what each call must come out as. ``NetworkSmdr`` is the PBX's network SMDR port:
the User ID / Password login, then the records; like the PBX it keeps a buffer of
records and prints it again to every new login. ``SerialSmdr`` prints to a pty, the
PBX's RS-232C port as a serial adapter would show it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from cti.phone import to_e164
from pbx_adapters.smdr.day import DayCall, Expected

Pattern = Literal["A", "B", "C"]
WIDTHS = {"A": (2, 25), "B": (2, 20), "C": (4, 50)}  # CO, Dial Number
HEADER = "Date     Time    Ext   CO  Dial Number                Ring Duration  Acc code   CD"
RULE = "-" * 80
BUFFER = 200  # records the PBX keeps (and prints again to each new login)


def record(
    ended: datetime,
    ext: str,
    co: str | None,
    dial: str,
    *,
    ring: int | None = None,
    talk: int | None = 0,
    condition: str = "",
    account: str = "",
    pattern: Pattern = "A",
) -> str:
    """One SMDR line, its columns as wide as ``pattern`` makes them."""
    co_width, dial_width = WIDTHS[pattern]
    ring_text = "" if ring is None else f"{ring // 60}'{ring % 60:02d}"
    talk_text = (
        "" if talk is None else f"{talk // 3600:02d}:{talk % 3600 // 60:02d}'{talk % 60:02d}"
    )
    columns = [
        f"{ended:%d/%m/%y}",
        f"{ended:%I:%M%p}",
        f"{ext:<5}",
        f"{(co or '').zfill(co_width) if co else '':<{co_width}}",
        f"{dial[:dial_width]:<{dial_width}}",
    ]
    if pattern != "B":
        columns.append(f"{ring_text:>4}")
    columns.append(f"{talk_text:<8}")
    if pattern != "A":
        cost = f"{(talk or 0) * 0.02:08.2f}" + ("RUB" if pattern == "C" else "RU")
        columns.append(cost if talk else " " * len(cost))
    columns += [f"{account:<10}", condition]
    return " ".join(columns).rstrip()


def incoming(call: DayCall, width: int) -> str:
    """The Dial Number of an incoming call: <D>DDI<I>name+number, what fits."""
    for did, name in ((call.did, call.name), ("", call.name), ("", "")):
        text = (f"<D>{did}" if did else "") + f"<I>{name}{call.number}"
        if len(text) <= width:
            return text
    return f"<I>{call.number}"


@dataclass
class PrintedDay:
    lines: list[str]
    expected: list[Expected]
    bad_lines: int = 0  # lines printed broken on purpose


def print_day(
    calls: list[DayCall], region: str = "RU", pattern: Pattern = "C", seed: int = 7
) -> PrintedDay:
    rng = random.Random(seed)  # noqa: S311 (a simulated day, not a secret)
    out = PrintedDay([], [])
    _, width = WIDTHS[pattern]

    def e164(number: str) -> str:
        return to_e164(number, region) or number

    for n, call in enumerate(calls):
        if n % 60 == 0:
            out.lines += ["", RULE, HEADER, RULE]
        kw = {"pattern": pattern}
        inbound = incoming(call, width)
        if call.kind in ("answered", "transferred", "forwarded"):
            if rng.random() < 0.2:  # notices printed while it rang and when answered
                started = call.ended - timedelta(seconds=call.talk + call.talk_after)
                out.lines.append(
                    record(started, call.extension, "01", inbound, talk=None, condition="RC", **kw)
                )
        if call.kind == "answered":
            out.lines.append(
                record(
                    call.ended, call.extension, "01", inbound, ring=call.ring, talk=call.talk, **kw
                )
            )
            out.expected.append(
                Expected("inbound", e164(call.number), "answered", False, call.extension)
            )
        elif call.kind in ("missed", "voicemail"):
            if rng.random() < 0.5:  # the not-answered notice, with no duration
                line = record(
                    call.ended,
                    call.extension,
                    "01",
                    inbound,
                    ring=call.ring,
                    talk=None,
                    condition="NA",
                    **kw,
                )
            else:
                line = record(
                    call.ended, call.extension, "01", inbound, ring=call.ring, talk=0, **kw
                )
            out.lines.append(line)
            out.expected.append(Expected("inbound", e164(call.number), "no_answer", True, None))
        elif call.kind == "hung_up":
            out.lines.append(record(call.ended, call.extension, "01", inbound, talk=0, **kw))
            out.expected.append(Expected("inbound", e164(call.number), "unknown", False, None))
        elif call.kind == "transferred":  # two records: before and after the transfer
            first_end = call.ended - timedelta(seconds=call.talk_after)
            out.lines.append(
                record(
                    first_end,
                    call.extension,
                    "01",
                    inbound,
                    ring=call.ring,
                    talk=call.talk,
                    condition="TR",
                    **kw,
                )
            )
            out.lines.append(
                record(call.ended, call.other_extension, "01", inbound, talk=call.talk_after, **kw)
            )
            out.expected.append(
                Expected("inbound", e164(call.number), "answered", False, call.extension)
            )
            out.expected.append(
                Expected("inbound", e164(call.number), "answered", False, call.other_extension)
            )
        elif call.kind == "forwarded":  # trunk to trunk: printed twice
            lines = [
                record(
                    call.ended,
                    call.extension,
                    "01",
                    inbound,
                    ring=call.ring,
                    talk=call.talk,
                    condition="TR",
                    **kw,
                ),
                record(
                    call.ended,
                    call.extension,
                    "02",
                    call.forward_to,
                    talk=call.talk - 2,
                    condition="TR",
                    **kw,
                ),
            ]
            out.lines += lines if rng.random() < 0.5 else lines[::-1]
            out.expected.append(
                Expected(
                    "inbound",
                    e164(call.number),
                    "answered",
                    False,
                    call.extension,
                    transferred_to=e164(call.forward_to),
                )
            )
        elif call.kind in ("dialled", "dialled_unanswered"):
            dial = call.number if rng.random() < 0.7 else call.number[:1] + "P" + call.number[1:]
            out.lines.append(record(call.ended, call.extension, "02", dial, talk=call.talk, **kw))
            outcome = "answered" if call.talk else "no_answer"
            out.expected.append(
                Expected("outbound", e164(call.number), outcome, False, None, call.extension)
            )
        elif call.kind == "internal":
            out.lines.append(
                record(
                    call.ended,
                    call.extension,
                    None,
                    f"EXT{call.other_extension}",
                    ring=call.ring,
                    talk=call.talk,
                    **kw,
                )
            )
            out.expected.append(
                Expected("internal", None, "answered", False, call.other_extension, call.extension)
            )
        if rng.random() < 0.03:
            out.lines.append(record(call.ended, call.extension, None, "LOG OUT", talk=None, **kw))
        if n % 97 == 50:  # a record cut short, the next printed straight after it
            out.lines[-1] = (
                f"{call.ended:%d/%m/%y} {call.ended:%I:%M%p} 101   01 <I>849" + out.lines[-1]
            )
            out.bad_lines += 1
        if n % 131 == 70:
            out.lines.append(
                f"**/**/** **:**** {call.extension}   01 <I>{call.number}  **'** **:**'**"
            )
            out.bad_lines += 1
    return out


@dataclass
class NetworkSmdr:
    """The PBX's network SMDR port (127.0.0.1, a free port)."""

    password: str
    user: str = "SMDR"
    encoding: str = "cp866"
    port: int = 0
    buffer: deque[str] = field(default_factory=lambda: deque(maxlen=BUFFER))
    logins: int = 0
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _sessions: set[asyncio.Task] = field(default_factory=set)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.drop()
        if self._server is not None:
            self._server.close()
        for task in list(self._sessions):
            task.cancel()
        await asyncio.gather(*self._sessions, return_exceptions=True)

    def print(self, line: str) -> None:
        """Print one line: to every logged-in connection, and into the buffer."""
        self.buffer.append(line)
        for writer in list(self._writers):
            writer.write(self._bytes(line))

    def print_bytes(self, data: bytes) -> None:
        """Raw bytes to every logged-in connection (a record cut anywhere)."""
        for writer in list(self._writers):
            writer.write(data)

    def drop(self) -> None:
        """Every connection cut, as a network outage or a PBX reset would."""
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    def _bytes(self, line: str) -> bytes:
        return (line + "\r\n").encode(self.encoding, errors="replace")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        task.add_done_callback(self._sessions.discard)
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, TimeoutError):
            for _ in range(3):
                writer.write(b"\r\nKX-NS1000 SMDR\r\nUser ID: ")
                user = (await asyncio.wait_for(reader.readline(), 10)).strip().decode()
                writer.write(b"Password: ")
                password = (await asyncio.wait_for(reader.readline(), 10)).strip().decode()
                if user == self.user and password == self.password:
                    break
                writer.write(b"\r\nLogin incorrect\r\n")
            else:
                writer.close()
                return
            self.logins += 1
            writer.write(b"\r\n" + b"".join(self._bytes(line) for line in self.buffer))
            self._writers.add(writer)
            await reader.read()  # until the client goes
        self._writers.discard(writer)
        writer.close()


class SerialSmdr:
    """The PBX's RS-232C port on a pty; ``path`` is a symlink to its slave side."""

    def __init__(self, path: Path, encoding: str = "cp866") -> None:
        self.path = path
        self.encoding = encoding
        self._master, slave = os.openpty()
        os.set_blocking(self._master, False)
        self._slave_name = os.ttyname(slave)
        self._slave = slave  # kept open: closing it would hang up the pty
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        path.symlink_to(self._slave_name)

    async def print(self, line: str) -> None:
        await self.write((line + "\r\n").encode(self.encoding, errors="replace"))

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                sent = os.write(self._master, view)
            except BlockingIOError:  # the reader is behind: a UART would wait for XON
                await asyncio.sleep(0.005)
                continue
            view = view[sent:]

    def close(self) -> None:
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
