"""Avaya IP Office SMDR segments to calls (sans-I/O).

A call is every segment with its Call ID (and Call Start), up to the one whose
Continuation is 0. Segments follow one another in time: each lasts its ring, connected,
hold and park time, so the call ends at Call Start plus the sum of them all.

- Direction: internal when Is Internal says so or no trunk (T) took part; else the
  first segment's I or O.
- Inbound: the caller is Caller, the DDI is Called Number. In each segment the party
  that is no trunk is who had the call: an extension (E) that talked answered it; a
  move from one extension to another between segments is a transfer; voicemail (V)
  answering is no person answering. A segment between two trunks that talked is the
  call forwarded off-switch (to External Targeted Number) and answered there.
- Missed: an inbound call that no extension talked on and that was not answered off-
  switch, with a ring time (voicemail took it, or the caller gave up). An inbound call
  with no ring time and no talk is not missed: its outcome is unknown.
- Outbound: the number is Called Number (Dialled Number when empty), trunk-access
  digits removed; it is answered when a segment was connected.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cti.calls import Call, CallLeg, CallTransfer
from cti.domain import Direction, LegResult, Outcome, TransferKind
from pbx_adapters.smdr.avaya.records import AvayaSegment, Party, parse_line
from pbx_adapters.smdr.numbers import NumberRules
from pbx_adapters.smdr.records import Decoded, Skipped, record_call_id

MAX_OPEN_CALLS = 5000  # calls whose last segment has not come yet


class AvayaCalls:
    def __init__(self, pbx: str, rules: NumberRules, time_zone: ZoneInfo) -> None:
        self.pbx = pbx
        self.rules = rules
        self.time_zone = time_zone
        self._open: OrderedDict[str, list[AvayaSegment]] = OrderedDict()

    def feed(self, line: str) -> list[Decoded]:
        segment = parse_line(line)
        if not isinstance(segment, AvayaSegment):
            return [segment]
        key = f"{segment.call_start:%Y%m%d%H%M%S}-{segment.call_id}"
        segments = self._open.setdefault(key, [])
        if any(s.line == segment.line for s in segments):
            return [Skipped(line, "a segment already read (sent again)")]
        segments.append(segment)
        if segment.continues:
            if len(self._open) <= MAX_OPEN_CALLS:
                return []
            key = next(iter(self._open))  # the oldest never ended: keep what it said
        return [self._call(key, self._open.pop(key))]

    def flush(self) -> list[Decoded]:
        return []  # a Continuation of 1 promises more: an open call waits for it

    def _call(self, key: str, segments: list[AvayaSegment]) -> Call:
        first = segments[0]
        started = first.call_start.replace(tzinfo=self.time_zone).astimezone(UTC)
        trunks = any(p.kind == "T" for s in segments for p in s.parties)
        internal = not trunks or any(s.is_internal for s in segments)
        call = Call(
            record_call_id(self.pbx, key),
            self.pbx,
            started,
            direction=Direction.INTERNAL
            if internal
            else (Direction.INBOUND if first.inbound else Direction.OUTBOUND),
            pbx_ref={"call_id": first.call_id, "records": "\n".join(s.line for s in segments)},
        )
        if call.direction is Direction.INBOUND:
            call.external_number = self.rules.caller(first.caller) if first.caller else None
            call.did = (self.rules.caller(first.called) if first.called else None) or None
        elif call.direction is Direction.OUTBOUND:
            call.caller_extension = _extension(first.caller, first.parties)
            number = first.called or first.dialled
            call.external_number = self.rules.outside(number) if number else None
        else:
            call.caller_extension = _extension(first.caller, first.parties)
        at, answered_elsewhere = started, False
        for segment in segments:
            answered_elsewhere |= self._segment(call, segment, at)
            at += timedelta(seconds=segment.total_seconds)
        call.ended_at = at
        for leg in call.legs:
            leg.ended_at = leg.ended_at or at
        self._outcome(call, segments, answered_elsewhere)
        return call

    def _segment(self, call: Call, segment: AvayaSegment, at: datetime) -> bool:
        """Add one segment to ``call``; True when it was answered off-switch."""
        if call.direction is Direction.OUTBOUND:
            return False  # the extension placed it: answered or not is the far end's
        answered_at = at + timedelta(seconds=segment.ring_seconds)
        talked = segment.connected_seconds > 0
        handler = _handler(segment, call.caller_extension)
        if handler is None:  # trunk to trunk: forwarded off-switch
            if talked and call.direction is Direction.INBOUND:
                call.answered_at = call.answered_at or answered_at
                target = segment.targeted_number or None
                to = self.rules.outside(target) if target else None
                call.transfers.append(CallTransfer(TransferKind.BLIND, call.answered_by, to, at))
                return True
            return False
        if handler.kind != "E" or handler.extension is None:
            if handler.kind == "V" and talked:
                call.pbx_ref["voicemail"] = handler.device
            return False
        previous = call.answered_by
        leg = CallLeg(handler.extension, at)
        call.legs.append(leg)
        if talked:
            leg.answered_at, leg.result = answered_at, LegResult.ANSWERED
            call.answered_at = call.answered_at or answered_at
            call.answered_by = handler.extension
            if previous and previous != handler.extension:
                call.transfers.append(
                    CallTransfer(TransferKind.BLIND, previous, handler.extension, at)
                )
        else:
            leg.ended_at, leg.result = answered_at, LegResult.NO_ANSWER
        return False

    @staticmethod
    def _outcome(call: Call, segments: list[AvayaSegment], answered_elsewhere: bool) -> None:
        if call.direction is not Direction.INBOUND:
            call.outcome = (
                Outcome.ANSWERED
                if any(s.connected_seconds for s in segments)
                else Outcome.NO_ANSWER
            )
            if call.outcome is Outcome.ANSWERED and call.answered_at is None:
                call.answered_at = call.started_at + timedelta(seconds=segments[0].ring_seconds)
        elif call.answered_by or answered_elsewhere:
            call.outcome = Outcome.ANSWERED
        elif any(s.ring_seconds for s in segments):
            call.outcome, call.missed = Outcome.NO_ANSWER, True
        else:  # nothing rang and nobody talked: the PBX does not say it was missed
            call.outcome = Outcome.UNKNOWN


def _handler(segment: AvayaSegment, caller_extension: str | None) -> Party | None:
    """The party of a segment that is not a trunk (nor the internal caller)."""
    others = [p for p in segment.parties if p.kind != "T"]
    if caller_extension is not None and len(others) > 1:
        others = [p for p in others if p.extension != caller_extension] or others
    return others[0] if others else None


def _extension(caller: str, parties: tuple[Party, Party]) -> str | None:
    if caller.isdigit() and any(p.extension == caller for p in parties):
        return caller
    return next((p.extension for p in parties if p.extension), caller if caller.isdigit() else None)
