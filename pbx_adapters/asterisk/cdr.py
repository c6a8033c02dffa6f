"""Calls from Asterisk's CDR, sans-I/O: the rows of one Linkedid in, one call out.

Asterisk writes a CDR row per pair of channels (a caller and whom it dialled) when they
hang up: ``calldate`` (the start), ``duration`` (start to end), ``billsec`` (answer to
end), ``disposition`` (ANSWERED, NO ANSWER, BUSY, FAILED, CONGESTION), ``channel``,
``dstchannel``, ``src``, ``dst``, ``dcontext``, ``uniqueid`` and ``linkedid``: FreePBX's
``asteriskcdrdb.cdr``, or ``cdr_adaptive_odbc`` with the same columns. It is what the
service reads when the live feed missed something (the link was down, or the service
was): a call that ended unseen, or one that came and went entirely while nobody
listened. The CDR knows less than the live feed (no ring start per phone, Local
channels of its own), so what it gives is marked ``recovered_from_cdr``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cti.calls import Call, CallLeg
from cti.domain import Direction, LegResult, Outcome
from cti.phone import to_e164
from pbx_adapters.asterisk.channels import ChannelMap

DISPOSITIONS = {
    "ANSWERED": LegResult.ANSWERED,
    "NO ANSWER": LegResult.NO_ANSWER,
    "BUSY": LegResult.BUSY,
    "FAILED": LegResult.FAILED,
    "CONGESTION": LegResult.FAILED,
}
CDR_COLUMNS = (
    "calldate",
    "src",
    "dst",
    "dcontext",
    "clid",
    "channel",
    "dstchannel",
    "disposition",
    "duration",
    "billsec",
    "uniqueid",
    "linkedid",
)


@dataclass(frozen=True, slots=True)
class CdrRow:
    calldate: datetime  # UTC
    src: str
    dst: str
    dcontext: str
    clid: str
    channel: str
    dstchannel: str
    disposition: str
    duration: int
    billsec: int
    uniqueid: str
    linkedid: str

    @property
    def ended_at(self) -> datetime:
        return self.calldate + timedelta(seconds=self.duration)

    @property
    def answered_at(self) -> datetime | None:
        if self.disposition != "ANSWERED":
            return None
        return self.ended_at - timedelta(seconds=self.billsec)


def name_of(clid: str) -> str | None:
    """The name in a CDR ``clid``: ``"Иван Петров" <+7812…>``."""
    if clid.startswith('"') and '" <' in clid:
        return clid[1 : clid.index('" <')] or None
    return None


class CdrCalls:
    """Turns CDR rows into the service's calls, the way the tracker would have."""

    def __init__(
        self, pbx: str, channel_map: ChannelMap, region: str, inbound_contexts: Iterable[str]
    ) -> None:
        self.pbx = pbx
        self.channel_map = channel_map
        self.region = region
        self.inbound_contexts = tuple(inbound_contexts)

    def by_linkedid(self, rows: Iterable[CdrRow]) -> dict[str, Call]:
        grouped: dict[str, list[CdrRow]] = defaultdict(list)
        for row in rows:
            grouped[row.linkedid or row.uniqueid].append(row)
        calls = {}
        for linkedid, group in grouped.items():
            call = self.call_of(linkedid, sorted(group, key=lambda r: (r.calldate, r.uniqueid)))
            if call is not None:
                calls[linkedid] = call
        return calls

    def call_of(self, linkedid: str, rows: list[CdrRow]) -> Call | None:
        ext = self.channel_map.extension_of
        root = next((r for r in rows if r.uniqueid == linkedid), rows[0])
        caller_ext = ext(root.channel)
        call = Call(
            id=f"{self.pbx}:{linkedid}",
            pbx=self.pbx,
            started_at=min(r.calldate for r in rows),
            ended_at=max(r.ended_at for r in rows),
            pbx_ref={"linkedid": linkedid},
            recovered_from_cdr=True,
        )
        call.legs = self._legs(rows, caller_ext)
        outside = [r for r in rows if r.dstchannel and ext(r.dstchannel) is None]
        outside = [r for r in outside if ext(r.channel) is not None]
        if caller_ext is None:
            call.direction = Direction.INBOUND
            call.external_number = to_e164(root.src, self.region) or root.src or None
            call.external_name = name_of(root.clid)
            if root.dcontext.startswith(self.inbound_contexts) and root.dst.isdigit():
                call.did = root.dst
        elif outside:
            call.direction, call.caller_extension = Direction.OUTBOUND, caller_ext
            call.external_number = to_e164(outside[0].dst, self.region) or outside[0].dst
        elif call.legs:
            call.direction, call.caller_extension = Direction.INTERNAL, caller_ext
        else:
            return None  # a voicemail check, a feature code: no call to log
        answered = [leg for leg in call.legs if leg.answered_at is not None]
        if call.direction is Direction.OUTBOUND:
            times = [r.answered_at for r in outside if r.answered_at is not None]
            call.answered_at = min(times) if times else None
        elif answered:
            call.answered_at = min(leg.answered_at for leg in answered if leg.answered_at)
            call.answered_by = max(answered, key=lambda leg: leg.answered_at or call.started_at)
            call.answered_by = call.answered_by.extension
        call.outcome = self._outcome(call, outside)
        call.missed = call.direction is Direction.INBOUND and call.outcome is not Outcome.ANSWERED
        call.ended_while_disconnected = True
        return call

    def _legs(self, rows: list[CdrRow], caller_ext: str | None) -> list[CallLeg]:
        """One leg per dialled phone; a Local channel's own row counts only when no row
        names the phone itself (the Local half is "answered" as soon as it is created)."""
        ext = self.channel_map.extension_of
        dialled = [r for r in rows if r.dstchannel and ext(r.dstchannel) not in (None, caller_ext)]
        real = {ext(r.dstchannel) for r in dialled if not r.dstchannel.startswith("Local/")}
        legs = []
        for row in dialled:
            extension = ext(row.dstchannel)
            if extension is None or (row.dstchannel.startswith("Local/") and extension in real):
                continue
            result = DISPOSITIONS.get(row.disposition, LegResult.FAILED)
            legs.append(
                CallLeg(
                    extension,
                    ring_started_at=row.calldate,
                    answered_at=row.answered_at,
                    ended_at=row.ended_at,
                    result=result,
                )
            )
        return legs

    @staticmethod
    def _outcome(call: Call, outside: list[CdrRow]) -> Outcome:
        if call.answered_at is not None:
            return Outcome.ANSWERED
        results = [leg.result for leg in call.legs]
        results += [DISPOSITIONS.get(r.disposition, LegResult.FAILED) for r in outside]
        if results and all(r is LegResult.BUSY for r in results):
            return Outcome.BUSY
        if results and all(r is LegResult.FAILED for r in results):
            return Outcome.FAILED
        # The CDR writes NO ANSWER both for a phone that rang out and for a caller who
        # hung up first: it cannot tell them apart, and neither can we.
        return Outcome.NO_ANSWER
