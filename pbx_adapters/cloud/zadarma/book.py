"""Zadarma's calls, from its notifications (sans-I/O).

Zadarma posts, for one ``pbx_call_id``: NOTIFY_START (a call to a DID comes in),
NOTIFY_INTERNAL (an extension rings), NOTIFY_ANSWER (someone answered), NOTIFY_END (how
it ended: ``disposition``, ``duration``, the extension that had it, whether it was
recorded); for outgoing calls NOTIFY_OUT_START and NOTIFY_OUT_END; later NOTIFY_RECORD
when its recording is ready. They carry no sequence number and no time but the call's
start, so the book keeps each notification once (by kind and party) and builds the call
from the set: the same notifications in any order make the same call. The moment a
notification is first heard gives the call's end (NOTIFY_END) and, from its duration,
when it was answered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from cti.calls import Call, CallLeg, CallTransfer
from cti.domain import Direction, LegResult, Outcome, TransferKind
from cti.events import DomainEvent
from cti.phone import is_extension, to_e164
from pbx_adapters.cloud.diff import call_events

OUTCOMES = {
    "answered": Outcome.ANSWERED,
    "busy": Outcome.BUSY,
    "cancel": Outcome.ABANDONED,  # the caller hung up while it rang
    "no answer": Outcome.NO_ANSWER,
}
MISSED = {Outcome.NO_ANSWER, Outcome.ABANDONED, Outcome.BUSY}
MAX_NOTIFICATIONS_PER_CALL = 200


@dataclass
class Notification:
    fields: dict[str, str]
    heard: datetime  # when it first came


@dataclass
class Entry:
    seen: dict[tuple[str, str], Notification] = field(default_factory=dict)
    call: Call | None = None
    over: bool = False
    last_heard: float = 0.0
    originate_id: str | None = None  # the click-to-dial that started it


def key_of(fields: dict[str, str]) -> tuple[str, str]:
    """What makes a notification the same one sent again."""
    event = fields["event"]
    party = fields.get("internal", "") if event == "NOTIFY_INTERNAL" else ""
    if event == "NOTIFY_ANSWER":
        party = fields.get("destination", "")
    return event, party


class ZadarmaBook:
    def __init__(self, pbx: str, region: str, time_zone: ZoneInfo) -> None:
        self.pbx = pbx
        self.region = region
        self.time_zone = time_zone
        self.entries: dict[str, Entry] = {}
        self._changed: dict[str, Call] = {}

    def notify(self, fields: dict[str, str], heard: datetime) -> list[DomainEvent]:
        """One notification (its signature checked); [] for one heard already."""
        call_id = fields["pbx_call_id"]
        entry = self.entries.setdefault(call_id, Entry())
        key = key_of(fields)
        if key in entry.seen or len(entry.seen) >= MAX_NOTIFICATIONS_PER_CALL:
            return []
        entry.seen[key] = Notification(dict(fields), heard)
        entry.last_heard = heard.timestamp()
        before = entry.call
        call = self.build(call_id, entry)
        if call is None:
            return []  # only NOTIFY_RECORD so far: nothing to show
        over = not entry.over and call.ended_at is not None
        entry.over |= over
        entry.call = call
        self._changed[call.id] = call
        return call_events(before, call, over=over)

    def heard(self, fields: dict[str, str]) -> bool:
        """Whether this notification came before."""
        entry = self.entries.get(fields["pbx_call_id"])
        return entry is not None and key_of(fields) in entry.seen

    def call_start(self, fields: dict[str, str]) -> datetime:
        start = datetime.strptime(fields["call_start"], "%Y-%m-%d %H:%M:%S")
        return start.replace(tzinfo=self.time_zone)

    def build(self, call_id: str, entry: Entry) -> Call | None:
        seen = {kind: n for (kind, _), n in entry.seen.items() if kind != "NOTIFY_INTERNAL"}
        first = seen.get("NOTIFY_START") or seen.get("NOTIFY_OUT_START")
        first = first or seen.get("NOTIFY_END") or seen.get("NOTIFY_OUT_END")
        if first is None:
            first = next((n for (k, _), n in entry.seen.items() if k == "NOTIFY_INTERNAL"), None)
        if first is None:
            return None
        started = self.call_start(first.fields)
        call = Call(f"{self.pbx}:{call_id}", self.pbx, started, pbx_ref={"pbx_call_id": call_id})
        call.originate_id = entry.originate_id
        outgoing = any(k.startswith("NOTIFY_OUT") for k in seen)
        if outgoing:
            call.direction = Direction.OUTBOUND
            call.caller_extension = first.fields.get("internal") or None
            call.external_number = self._number(first.fields.get("destination"))
        else:
            call.direction = Direction.INBOUND
            call.external_number = self._number(first.fields.get("caller_id"))
            call.did = self._number(first.fields.get("called_did"))
        rung = sorted(p for (k, p), _ in entry.seen.items() if k == "NOTIFY_INTERNAL" and p)
        for ext in rung:
            call.legs.append(CallLeg(ext, started))
        end = seen.get("NOTIFY_END") or seen.get("NOTIFY_OUT_END")
        answers = {p: n for (k, p), n in entry.seen.items() if k == "NOTIFY_ANSWER"}
        last = (end.fields.get("internal") or None) if end else None
        if call.direction is Direction.INBOUND and answers:
            # Who had it at the end (NOTIFY_END says), else the one who answered.
            takers = sorted(answers, key=lambda p: (p == last, p))
            for taker in takers:
                self._answered(call, taker, answers[taker].heard)
        if end is not None:
            self._end(call, end)
        record = seen.get("NOTIFY_RECORD")
        if record is not None or (end is not None and end.fields.get("is_recorded") == "1"):
            source = (record or end).fields  # type: ignore[union-attr]
            call.pbx_ref["call_id_with_rec"] = source.get("call_id_with_rec", "")
        return call

    def _answered(self, call: Call, party: str, heard: datetime) -> None:
        if not is_extension(party):
            return
        leg = next((leg for leg in call.legs if leg.extension == party), None)
        if leg is None:
            leg = CallLeg(party, call.started_at)
            call.legs.append(leg)
        leg.answered_at, leg.result = heard, LegResult.ANSWERED
        if call.answered_by and call.answered_by != party:
            call.transfers.append(CallTransfer(TransferKind.BLIND, call.answered_by, party, heard))
        call.answered_by = party
        call.answered_at = call.answered_at or heard

    def _end(self, call: Call, end: Notification) -> None:
        fields = end.fields
        outcome = OUTCOMES.get(fields.get("disposition", ""), Outcome.FAILED)
        call.ended_at = max(end.heard, call.started_at)
        talk = timedelta(seconds=_int(fields.get("duration")))
        if outcome is Outcome.ANSWERED:
            # The notification's own moment is all it tells: answered duration before.
            answered = max(call.ended_at - talk, call.started_at)
            call.answered_at = answered
            for leg in call.legs:
                if leg.answered_at is not None:
                    leg.answered_at = min(leg.answered_at, call.ended_at)
            if call.direction is Direction.INBOUND and call.answered_by is None:
                self._answered(call, fields.get("internal", ""), answered)
        else:
            call.answered_at = None
        for leg in call.legs:
            leg.answered_at = leg.answered_at if outcome is Outcome.ANSWERED else None
            leg.ended_at = call.ended_at
            if leg.result is None or outcome is not Outcome.ANSWERED:
                leg.result = (
                    LegResult.CANCELLED
                    if outcome is Outcome.ANSWERED
                    else (LegResult.BUSY if outcome is Outcome.BUSY else LegResult.NO_ANSWER)
                )
        call.outcome = outcome
        call.missed = call.direction is Direction.INBOUND and outcome in MISSED

    def live(self, call_id: str) -> Call | None:
        entry = self.entries.get(call_id.split(":", 1)[-1])
        if entry is None or entry.call is None or entry.call.ended_at is not None:
            return None
        return entry.call

    def take_changed(self) -> list[Call]:
        changed, self._changed = list(self._changed.values()), {}
        return changed

    def expire(self, now: float) -> list[DomainEvent]:
        for call_id, entry in list(self.entries.items()):
            if entry.call is not None and entry.call.ended_at is not None:
                recorded = any(k == "NOTIFY_RECORD" for k, _ in entry.seen)
                waits = entry.call.pbx_ref.get("call_id_with_rec") and not recorded
                if not waits or now - entry.last_heard > 3600:
                    del self.entries[call_id]
        return []

    def _number(self, raw: str | None) -> str | None:
        if not raw:
            return None
        if is_extension(raw):
            return raw
        text = raw if raw.startswith("+") else ("+" + raw if len(raw) >= 11 else raw)
        return to_e164(text, self.region) or raw


def _int(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0
