"""The AT command engine, sans-I/O: commands and bytes in, bytes to write and events out.

One command is in flight at a time (the transport queues the rest). The modem's output
is lines ended by CR and/or LF, in any split across reads; blank lines are noise. Each
line is, in this order of checks:

- the PDU line of a ``+CMT:`` or ``+CDS:`` header just before it (unsolicited SMS or
  status report);
- the echo of the pending command (ATE1, or a modem that ignores ATE0) or of its PDU;
- a final result: ``OK``, ``ERROR``, ``+CMS/+CME ERROR: ...``, ``COMMAND NOT SUPPORT``,
  and ``NO CARRIER``/``BUSY``/``NO ANSWER``/``NO DIALTONE`` while dialling or answering;
- an unsolicited result code (URC): ``RING``, boot chatter like ``Call Ready``, and any
  ``+NAME:``/``^NAME:`` line whose NAME is not the pending command's (``+CMTI`` while
  ``AT+CSQ`` is pending). A line with the pending command's name is its answer, except
  that ``+CREG: 1`` (no ``<n>`` before ``<stat>``) is a URC while ``AT+CREG?`` waits for
  ``+CREG: 1,1``, and so for ``+CGREG``/``+CEREG``; ``+CLIP: "<number>",...`` is a call's
  caller id, never the answer to ``AT+CLIP?`` (``+CLIP: <n>,<m>``);
- otherwise an information line of the pending command (``+CSQ: 20,99``, a PDU after
  ``+CMGR:``, a bare IMEI), or, with no command pending, an unexpected line (the late
  answer of a command that timed out).

``AT+CMGS=<len>`` waits for the ``> `` prompt, which ends no line; the engine then hands
the PDU and Ctrl-Z back as a ``Write`` event (and ESC if the command times out).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field

from gsm_modem.errors import CALL_RESULTS, ModemError, parse_error

CTRL_Z = b"\x1a"
ESC = b"\x1b"  # ends the modem's PDU input without sending
MAX_LINE = 4096  # a "line" this long without an end is line noise
PLAIN_URCS = frozenset({"RING", "NO CARRIER", "RDY", "Call Ready", "SMS Ready"})
PDU_URCS = frozenset({"+CMT", "+CDS"})  # header line, then the PDU on a line of its own
REGISTRATION = frozenset({"+CREG", "+CGREG", "+CEREG"})
_NAMED = re.compile(r"^([+^][A-Z][A-Z0-9]*)(?::\s*(.*))?$", re.IGNORECASE)
_COMMAND_NAME = re.compile(r"^AT([+^][A-Z][A-Z0-9]*)", re.IGNORECASE)
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})+")  # fullmatch: "$" would let a final "\n" in
_UNSAFE = re.compile(r"[\r\n\x00\x1a\x1b]")


@dataclass(frozen=True, slots=True)
class CommandResult:
    command: str
    lines: list[str]  # information lines, without echo, URCs and the final result
    ok: bool
    error: ModemError | None = None


@dataclass(frozen=True, slots=True)
class Write:
    """Bytes the transport must write now: the PDU and Ctrl-Z after the ``> `` prompt, or
    ESC when a PDU command timed out."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Urc:
    name: str  # "+CMTI", "^RSSI", "RING"
    args: list[str]  # the fields after "NAME: ", unquoted
    line: str
    pdu: str | None = None  # the PDU line after +CMT/+CDS


@dataclass(frozen=True, slots=True)
class UnexpectedLine:
    line: str


Event = CommandResult | Write | Urc | UnexpectedLine


def split_args(text: str) -> list[str]:
    """``"SM",3`` -> ``["SM", "3"]``; commas inside quotes stay."""
    return next(csv.reader([text], skipinitialspace=True)) if text else []


@dataclass(slots=True)
class _Pending:
    command: str
    name: str | None  # "+CSQ" for AT+CSQ; None for ATZ, ATE0, ...
    timeout: float
    deadline: float
    pdu: str | None
    lines: list[str] = field(default_factory=list)
    prompted: bool = False


class AtEngine:
    """One modem connection's AT dialogue; see the module's docstring."""

    def __init__(self) -> None:
        self._buffer = b""
        self._pending: _Pending | None = None
        self._pdu_header: str | None = None  # a +CMT/+CDS line waiting for its PDU line

    @property
    def pending(self) -> str | None:
        return self._pending.command if self._pending else None

    @property
    def deadline(self) -> float | None:
        """When the pending command times out: call ``check_timeouts`` then."""
        return self._pending.deadline if self._pending else None

    def command(self, text: str, *, timeout: float, now: float, pdu: str | None = None) -> bytes:
        """Start a command; returns the bytes to write. ``pdu`` (hex) goes after the prompt."""
        if self._pending is not None:
            raise RuntimeError(f"{self._pending.command!r} is still pending")
        if _UNSAFE.search(text) or not text.upper().startswith("AT"):
            raise ValueError("not a single AT command line")
        if pdu is not None and not _HEX.fullmatch(pdu):
            raise ValueError("the PDU is not hex")
        name = _COMMAND_NAME.match(text)
        self._pending = _Pending(
            text, name[1].upper() if name else None, timeout, now + timeout, pdu
        )
        return text.encode() + b"\r"

    def check_timeouts(self, now: float) -> list[Event]:
        pending = self._pending
        if pending is None or now < pending.deadline:
            return []
        self._pending = None
        # A late prompt would leave the modem reading our next command as PDU text.
        cancel = [Write(ESC)] if pending.pdu is not None else []
        return [
            *cancel,
            CommandResult(
                pending.command, pending.lines, False, ModemError.timeout(pending.timeout)
            ),
        ]

    def receive(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        buffer = self._buffer + data
        while True:
            buffer = buffer.lstrip(b"\r\n")
            pending = self._pending
            if pending and pending.pdu is not None and not pending.prompted:
                if buffer.startswith(b">"):
                    # "> " ends no line; a space arriving in a later read is a blank line.
                    buffer = buffer[2:] if buffer.startswith(b"> ") else buffer[1:]
                    pending.prompted = True
                    events.append(Write(pending.pdu.encode() + CTRL_Z))
                    continue
            end = next((i for i, byte in enumerate(buffer) if byte in b"\r\n"), -1)
            if end < 0:
                if len(buffer) > MAX_LINE:
                    events.append(UnexpectedLine(buffer.decode("utf-8", "replace")))
                    buffer = b""
                break
            # NUL is line noise (a modem powering up sends some), and no database takes it.
            line = buffer[:end].replace(b"\x00", b"").decode("utf-8", "replace")
            line = line.strip(" \t\x1a\x1b")
            buffer = buffer[end + 1 :]
            if line:
                events += self._line(line)
        self._buffer = buffer
        return events

    def _line(self, line: str) -> list[Event]:
        events: list[Event] = []
        if self._pdu_header is not None:
            header, self._pdu_header = self._pdu_header, None
            if _HEX.fullmatch(line):
                return [_urc(header, pdu=line)]
            events.append(UnexpectedLine(header))  # a header without its PDU
        pending = self._pending
        if pending is not None and line in (pending.command, pending.pdu):
            return events  # echo
        if pending is not None and (error := parse_error(line)) is not None:
            if line not in CALL_RESULTS or pending.command.upper().startswith(("ATD", "ATA")):
                return [*events, self._finish(error)]
        elif pending is not None and line == "OK":
            return [*events, self._finish(None)]
        if self._unsolicited(line):
            name = line.split(":", 1)[0].upper()
            if name in PDU_URCS:
                self._pdu_header = line
            else:
                events.append(_urc(line))
        elif pending is not None:
            pending.lines.append(line)
        else:
            events.append(UnexpectedLine(line))
        return events

    def _finish(self, error: ModemError | None) -> CommandResult:
        pending = self._pending
        assert pending is not None
        self._pending = None
        return CommandResult(pending.command, pending.lines, error is None, error)

    def _unsolicited(self, line: str) -> bool:
        if line in PLAIN_URCS:
            return True
        match = _NAMED.match(line)
        if match is None:
            return False
        name, rest = match[1].upper(), match[2] or ""
        pending = self._pending
        if pending is None or name != pending.name:
            return True
        if name in REGISTRATION:  # answer "<n>,<stat>,...", URC "<stat>[,"<lac>",...]"
            return re.match(r"\d+\s*,\s*\d+", rest) is None
        return name == "+CLIP" and rest.startswith('"')


def _urc(line: str, pdu: str | None = None) -> Urc:
    match = _NAMED.match(line)
    if match is None:
        return Urc(line, [], line, pdu)
    return Urc(match[1].upper(), split_args(match[2] or ""), line, pdu)
