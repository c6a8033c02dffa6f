"""Panasonic SMDR records to calls (sans-I/O).

Which record is which call, as the manuals describe the output:
- ``<I>`` in the dial number: an incoming trunk call (``<D>`` before it: the DDI it
  came in on); ``EXT<n>``: an intercom call to extension n; anything else: digits
  dialled out on the trunk (``P``/``F`` pauses and EFA signals dropped; what comes
  before ``=`` is a host PBX's access code; ``-`` starts digits the transfer target
  keyed in; ``.`` and ``X`` hide digits, so such a number is kept as printed).
- Missed: an incoming record marked ``NA`` (not answered), or one with a ring time and
  a duration of zero that was neither transferred nor forwarded. An incoming record
  with neither a duration nor a ring time (the caller hung up before anything rang)
  is not missed: its outcome is unknown.
- ``RC``/``VR`` (received) and ``AN``/``VA`` (answered) lines are notices printed while
  a call is still going; its record at the end counts, they do not.
- A trunk-to-trunk transfer or forward is printed twice, an incoming and an outgoing
  record of the same extension at the same minute, both ``TR`` (or ``FW``): they make
  one incoming call, transferred out to the number dialled.
- Calls before and after a flash/recall are two records, and stay two calls.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from cti.calls import Call, CallLeg, CallTransfer
from cti.domain import Direction, LegResult, Outcome, TransferKind
from pbx_adapters.smdr.numbers import NumberRules
from pbx_adapters.smdr.panasonic.records import (
    NOTICE_CONDITIONS,
    DateOrder,
    PanasonicRecord,
    parse_line,
    split_runs,
)
from pbx_adapters.smdr.records import Decoded, Rejected, Skipped, record_call_id

NUMBER_FIRST = re.compile(r"^(?P<number>\+?\d{5,})\s*(?P<name>.*)$")
NAME_FIRST = re.compile(r"^(?P<name>.*?)\s*(?P<number>\+?\d{5,})$")
INTERCOM = re.compile(r"^EXT(?P<ext>\d{1,8})$")
PAIRED = {"TR", "FW"}  # a trunk-to-trunk call: printed as an incoming and an outgoing record


class PanasonicCalls:
    def __init__(
        self,
        pbx: str,
        rules: NumberRules,
        time_zone: ZoneInfo,
        *,
        date_order: DateOrder = "MDY",
        time_is: Literal["end", "start"] = "end",
    ) -> None:
        self.pbx = pbx
        self.rules = rules
        self.time_zone = time_zone
        self.date_order = date_order
        self.time_is = time_is
        self._held: PanasonicRecord | None = None  # a TR/FW record waiting for its pair

    def feed(self, line: str) -> list[Decoded]:
        out: list[Decoded] = []
        for piece in split_runs(line):
            parsed = parse_line(piece, self.date_order)
            if not isinstance(parsed, PanasonicRecord):
                out.append(parsed)
            elif parsed.condition in NOTICE_CONDITIONS and parsed.duration_seconds is None:
                if parsed.condition == "NA":
                    out += self._record(parsed)
                else:
                    out.append(Skipped(piece, f"a {parsed.condition} notice of a call in progress"))
            elif parsed.duration_seconds is None:
                out.append(Rejected(piece, "no call duration"))
            else:
                out += self._record(parsed)
        return out

    def flush(self) -> list[Decoded]:
        held, self._held = self._held, None
        return [] if held is None else [self._call(held)]

    def _record(self, record: PanasonicRecord) -> list[Decoded]:
        held = self._held
        if held is not None and _pair(held, record):
            self._held = None
            inbound, outbound = (held, record) if _inbound(held) else (record, held)
            return [self._call(inbound, transferred_to=outbound)]
        out = self.flush()
        if record.condition in PAIRED and record.co is not None:
            self._held = record
        else:
            out.append(self._call(record))
        return out

    def _call(self, record: PanasonicRecord, transferred_to: PanasonicRecord | None = None) -> Call:
        ring = timedelta(seconds=record.ring_seconds or 0)
        talk = timedelta(seconds=record.duration_seconds or 0)
        printed = record.printed_at.replace(tzinfo=self.time_zone).astimezone(UTC)
        started = printed - ring - talk if self.time_is == "end" else printed
        ended = started + ring + talk
        call = Call(
            record_call_id(self.pbx, record.line),
            self.pbx,
            started,
            ended_at=ended,
            pbx_ref={"record": record.line},
        )
        ext = record.ext if record.ext.isdigit() else None
        if _inbound(record):
            self._incoming(call, record, ext, started + ring)
        elif (found := INTERCOM.match(record.dial)) and record.co is None:
            call.direction, call.caller_extension = Direction.INTERNAL, ext
            leg = CallLeg(found["ext"], started)
            call.legs.append(leg)
            _answer_or_not(call, leg, talk, started + ring, ended)
        else:
            call.direction, call.caller_extension = Direction.OUTBOUND, ext
            call.external_number = self._dialled(record.dial)
            call.outcome = Outcome.ANSWERED if talk else Outcome.NO_ANSWER
            call.answered_at = started + ring if talk else None
        if transferred_to is not None:
            to = self._dialled(transferred_to.dial)
            at = ended - timedelta(seconds=transferred_to.duration_seconds or 0)
            call.transfers.append(CallTransfer(TransferKind.BLIND, ext, to, max(at, started)))
            call.pbx_ref["transfer_record"] = transferred_to.line
        elif record.condition == "TR" and call.direction is Direction.INBOUND:
            call.transfers.append(CallTransfer(TransferKind.BLIND, ext, None, ended))
        return call

    def _incoming(self, call: Call, record: PanasonicRecord, ext: str | None, at: datetime) -> None:
        call.direction = Direction.INBOUND
        before, _, caller = record.dial.partition("<I>")
        if before.startswith("<D>"):
            did = before[3:].strip()
            call.did = (self.rules.caller(did) if did.isdigit() else did) or None
        name, number = _name_and_number(caller.strip())
        call.external_number = self.rules.caller(number) if number else None
        call.external_name = name or None
        talk = timedelta(seconds=record.duration_seconds or 0)
        leg = CallLeg(ext, call.started_at) if ext else None
        if leg is not None:
            call.legs.append(leg)
        if talk or record.condition in PAIRED:  # taken, or passed on by someone who took it
            call.outcome = Outcome.ANSWERED
            call.answered_at = at
            if leg is not None and talk:
                leg.answered_at, leg.result, call.answered_by = at, LegResult.ANSWERED, ext
        elif record.condition == "NA" or record.ring_seconds:
            call.outcome, call.missed = Outcome.NO_ANSWER, True
        else:  # nothing rang and nobody talked: the PBX does not say it was missed
            call.outcome = Outcome.UNKNOWN
        if leg is not None:
            leg.ended_at = call.ended_at
            leg.result = leg.result or (LegResult.NO_ANSWER if call.missed else LegResult.CANCELLED)

    def _dialled(self, dial: str) -> str | None:
        digits = dial.split("-", 1)[0].rsplit("=", 1)[-1]
        digits = digits.replace(" ", "")
        if not digits.strip("PF"):
            return None
        if "." in digits or "X" in digits:  # secret or privacy dialling: not all digits shown
            return re.sub(r"[PF]", "", digits)
        # A pause or EFA signal splits what was dialled: a trunk code before it, or digits
        # for an answering machine after it. The number is what reads as one.
        pieces = [re.sub(r"[PF]", "", digits), *filter(None, re.split(r"[PF]", digits))]
        numbers = [self.rules.outside(piece) for piece in pieces]
        return next((n for n in numbers if n.startswith("+")), numbers[0])


def _answer_or_not(
    call: Call, leg: CallLeg, talk: timedelta, at: datetime, ended: datetime
) -> None:
    leg.ended_at = ended
    if talk:
        leg.answered_at, leg.result = at, LegResult.ANSWERED
        call.answered_at, call.answered_by, call.outcome = at, leg.extension, Outcome.ANSWERED
    else:
        leg.result, call.outcome = LegResult.NO_ANSWER, Outcome.NO_ANSWER


def _inbound(record: PanasonicRecord) -> bool:
    return "<I>" in record.dial


def _pair(a: PanasonicRecord, b: PanasonicRecord) -> bool:
    """The incoming and outgoing records of one trunk-to-trunk transfer or forward."""
    return (
        a.ext == b.ext
        and a.printed_at == b.printed_at
        and a.condition == b.condition
        and _inbound(a) != _inbound(b)
        and b.co is not None
    )


def _name_and_number(caller: str) -> tuple[str, str]:
    for pattern in (NUMBER_FIRST, NAME_FIRST):
        found = pattern.match(caller)
        if found:
            return found["name"].strip(), found["number"]
    return caller, ""
