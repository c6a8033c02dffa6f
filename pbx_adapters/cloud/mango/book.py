"""Mango's calls, from its events (sans-I/O).

Mango posts ``events/call`` for every change of every leg of a call (its ``entry_id``):
``call_state`` Appeared, Connected, OnHold, Disconnected, where the leg is
(``location`` ivr, queue, abonent), ``from``/``to`` (an extension or a number), a
``seq`` that orders the events of one entry and a ``timestamp``; then one
``events/summary`` with how the call ended. Events may come out of order and twice.

So the book keeps every event of a call by ``seq`` and rebuilds the call from all of
them, in ``seq`` order, each time one comes: the same events in any order make the same
call, and an event seen twice changes nothing. The call is written as ended once the
summary came (its ``entry_result`` says whether it was answered, so a call is missed
only when Mango says so); when every party hung up, its pop closes at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cti.calls import Call, CallLeg, CallTransfer
from cti.domain import Direction, LegResult, Outcome, TransferKind
from cti.events import DomainEvent
from cti.phone import to_e164
from pbx_adapters.cloud.diff import call_events

MAX_EVENTS_PER_CALL = 500
DIRECTIONS = {1: Direction.INBOUND, 2: Direction.OUTBOUND}  # summary's call_direction
SUCCESS = 1000  # a command's result


@dataclass
class Entry:
    events: dict[int, dict[str, Any]] = field(default_factory=dict)
    summary: dict[str, Any] | None = None
    call: Call | None = None
    over: bool = False  # its pop closed
    last_heard: float = 0.0


class MangoBook:
    def __init__(self, pbx: str, region: str, end_after_seconds: float = 120.0) -> None:
        self.pbx = pbx
        self.region = region
        self.end_after = end_after_seconds
        self.entries: dict[str, Entry] = {}
        self._changed: dict[str, Call] = {}

    def event(self, payload: dict[str, Any], now: float) -> list[DomainEvent]:
        """One ``events/call``; [] for one seen already."""
        entry_id, seq = str(payload["entry_id"]), int(payload["seq"])
        entry = self.entries.setdefault(entry_id, Entry())
        if seq in entry.events or len(entry.events) >= MAX_EVENTS_PER_CALL:
            return []
        entry.events[seq] = payload
        return self._rebuild(entry_id, entry, now)

    def summary(self, payload: dict[str, Any], now: float) -> list[DomainEvent]:
        entry_id = str(payload["entry_id"])
        entry = self.entries.setdefault(entry_id, Entry())
        if entry.summary is not None:
            return []
        entry.summary = payload
        return self._rebuild(entry_id, entry, now)

    def live(self, call_id: str) -> Call | None:
        entry = self.entries.get(call_id.split(":", 1)[-1])
        if entry is None or entry.call is None or entry.call.ended_at is not None:
            return None
        return entry.call

    def leg_of(self, call_id: str, extension: str | None = None) -> str | None:
        """Mango's id of a live leg of the call (the extension's, else the outside one)."""
        entry = self.entries.get(call_id.split(":", 1)[-1])
        if entry is None:
            return None
        legs = [e for _, e in sorted(entry.events.items()) if e.get("call_state") != "Disconnected"]
        for event in reversed(legs):
            to = event.get("to") or {}
            if extension is None or str(to.get("extension") or "") == extension:
                return str(event.get("call_id") or "") or None
        return None

    def take_changed(self) -> list[Call]:
        changed, self._changed = list(self._changed.values()), {}
        return changed

    def expire(self, now: float) -> list[DomainEvent]:
        events: list[DomainEvent] = []
        for entry_id, entry in list(self.entries.items()):
            call = entry.call
            if call is not None and call.ended_at is not None and entry.summary is not None:
                del self.entries[entry_id]  # written down: a late duplicate adds nothing now
            elif entry.over and now - entry.last_heard > self.end_after and call is not None:
                finish(call, None)  # no summary came: the events say how it went
                self._changed[call.id] = call
                del self.entries[entry_id]
        return events

    def _rebuild(self, entry_id: str, entry: Entry, now: float) -> list[DomainEvent]:
        entry.last_heard = now
        before = entry.call
        call = build(self.pbx, self.region, entry_id, entry)
        over = not entry.over and (call.ended_at is not None or _everyone_left(call))
        entry.over |= over
        entry.call = call
        self._changed[call.id] = call
        return call_events(before, call, over=over)


def build(pbx: str, region: str, entry_id: str, entry: Entry) -> Call:
    """The call all of the entry's events (and its summary) make, in ``seq`` order."""
    events = [event for _, event in sorted(entry.events.items())]
    summary = entry.summary
    times = [event_time(e.get("timestamp")) for e in events]
    if summary is not None:
        times.append(event_time(summary.get("create_time")))
    call = Call(f"{pbx}:{entry_id}", pbx, min(t for t in times if t is not None))
    call.pbx_ref = {"entry_id": entry_id}
    legs: dict[str, CallLeg] = {}
    for event in events:
        _apply(call, legs, event, region)
    if summary is not None:
        call.direction = call.direction or DIRECTIONS.get(summary.get("call_direction"))
        finish(call, summary)
    return call


def _apply(call: Call, legs: dict[str, CallLeg], event: dict[str, Any], region: str) -> None:
    at = event_time(event.get("timestamp")) or call.started_at
    state, location = event.get("call_state"), event.get("location")
    source, target = event.get("from") or {}, event.get("to") or {}
    ext = str(target.get("extension") or "") or None
    originate = bool(event.get("command_id")) and call.direction is None and ext is not None
    if call.direction is None:
        if originate:  # click-to-dial: Mango rings the operator first
            call.direction, call.caller_extension = Direction.OUTBOUND, ext
            call.originate_id = str(event["command_id"])
        elif source.get("extension") and not ext:
            call.direction = Direction.OUTBOUND
            call.caller_extension = str(source["extension"])
        elif source.get("extension"):
            call.direction, call.caller_extension = Direction.INTERNAL, str(source["extension"])
        else:
            call.direction = Direction.INBOUND
    if call.direction is Direction.INBOUND:
        call.external_number = call.external_number or _number(source.get("number"), region)
        call.did = call.did or _number(target.get("line_number"), region)
    elif call.direction is Direction.OUTBOUND and not ext:
        call.external_number = call.external_number or _number(target.get("number"), region)
    if location == "queue":
        call.queue = call.queue or str(target.get("acd_group") or "queue")
    leg_id = str(event.get("call_id") or "")
    leg = legs.get(leg_id)
    if ext and location == "abonent" and leg is None:
        leg = legs[leg_id] = CallLeg(ext, at, originate=originate or _is_originate(call, ext))
        call.legs.append(leg)
    if state == "Connected":
        if leg is not None:
            leg.answered_at, leg.result = leg.answered_at or at, LegResult.ANSWERED
            if not leg.originate:
                if call.answered_by and call.answered_by != leg.extension:
                    call.transfers.append(
                        CallTransfer(TransferKind.BLIND, call.answered_by, leg.extension, at)
                    )
                call.answered_by = leg.extension
                call.answered_at = call.answered_at or at
        elif call.direction is Direction.OUTBOUND and not ext:
            call.answered_at = call.answered_at or at  # the number called answered
    elif state == "Disconnected" and leg is not None and leg.ended_at is None:
        leg.ended_at = at
        leg.result = leg.result or LegResult.NO_ANSWER


def finish(call: Call, summary: dict[str, Any] | None) -> None:
    """End ``call`` as the summary says (None: as its events say)."""
    ended = [leg.ended_at for leg in call.legs if leg.ended_at is not None]
    end = event_time(summary.get("end_time")) if summary else None
    call.ended_at = end or max(ended, default=call.answered_at or call.started_at)
    answered = bool(summary.get("entry_result")) if summary else call.answered_at is not None
    for leg in call.legs:
        if leg.ended_at is None:
            leg.ended_at = call.ended_at
            leg.result = leg.result or (
                LegResult.ANSWERED if leg.answered_at else LegResult.CANCELLED
            )
        elif leg.result is LegResult.NO_ANSWER and answered:
            leg.result = LegResult.CANCELLED  # someone else took it
    if answered and call.answered_at is None:
        call.answered_at = event_time(summary.get("talk_time")) if summary else None
    call.outcome = Outcome.ANSWERED if answered else Outcome.NO_ANSWER
    call.missed = call.direction is Direction.INBOUND and not answered


def _everyone_left(call: Call) -> bool:
    return bool(call.legs) and all(leg.ended_at is not None for leg in call.legs)


def _is_originate(call: Call, ext: str) -> bool:
    return call.originate_id is not None and ext == call.caller_extension and not call.legs


def _number(raw: Any, region: str) -> str | None:
    """Mango writes numbers as digits with the country code and no +."""
    text = str(raw or "").removeprefix("sip:")
    if not text:
        return None
    if text.isdigit() and len(text) >= 11:
        return to_e164("+" + text, region) or text
    return to_e164(text, region) or text


def event_time(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value), UTC) if value else None
    except (TypeError, ValueError, OverflowError, OSError):
        return None
