"""Call reports for supervisors: per day, per hour of the day, or per operator (pure).

Rows in are the calls of a period (``ReportCall``), grouped in the supervisor's time
zone; rows out have the counts and averages a supervisor reads. "Called back within N
minutes": a missed call whose callback task was closed by a conversation (a callback, or
the client calling again and being answered) within N minutes of the missed call.

Each row's calls add up: ``calls`` = ``answered`` (by this operator; per day or hour: by
anyone) + ``answered_elsewhere`` (a colleague took it: a ring group, a queue, a transfer)
+ ``missed`` (inbound, nobody answered: no answer, busy, the caller gave up) +
``not_answered`` (an internal call to this operator nobody took) + ``unknown`` (an
incoming call that ended while the PBX link was down, before anyone was seen to answer
it: nobody knows whether it was missed) + ``outgoing`` (calls
placed: outbound, and per day or hour internal ones, answered or not; ``outgoing_answered``
of them were).

Given the period, per day and per hour of the day every group of the period has a row,
quiet ones too: zero counts, and no averages or missed rate (None, an empty CSV cell)
where there is nothing to average. Days are the viewer's calendar days (a 23- or 25-hour
day across a DST change is one day); hours are the hours of the day that occur in the
period (a day that skips 02:00 has no 02:00; one that repeats it counts both in 02:00).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

Grouping = Literal["day", "hour", "operator"]
QUARTER = timedelta(minutes=15)
COLUMNS = (  # of each row, in order
    "key",
    "calls",
    "answered",
    "answered_elsewhere",
    "missed",
    "not_answered",
    "unknown",
    "outgoing",
    "outgoing_answered",
    "missed_rate",
    "average_wait_seconds",
    "average_talk_seconds",
    "called_back_in_time",
)


@dataclass(frozen=True, slots=True)
class ReportCall:
    started_at: datetime
    direction: str | None
    answered_by: str | None
    missed: bool
    wait_seconds: float | None
    talk_seconds: float | None
    rang: tuple[str, ...]  # extensions the call rang
    callback_after: timedelta | None = None  # missed calls: how long until someone talked
    unknown: bool = False  # its end was not seen and nobody was seen to answer it
    answered: bool | None = None  # anyone (an outside party too); None: answered_by says
    caller: str | None = None  # the extension that placed it

    @property
    def was_answered(self) -> bool:
        return self.answered if self.answered is not None else self.answered_by is not None


@dataclass(slots=True)
class _Totals:
    calls: int = 0
    answered: int = 0
    answered_elsewhere: int = 0
    missed: int = 0
    not_answered: int = 0
    unknown: int = 0
    outgoing: int = 0
    outgoing_answered: int = 0
    waits: list[float] = field(default_factory=list)
    talks: list[float] = field(default_factory=list)
    called_back: int = 0


def build_report(
    calls: list[ReportCall],
    grouping: Grouping,
    tz: ZoneInfo,
    callback_minutes: int,
    period: tuple[datetime, datetime] | None = None,
) -> list[dict[str, object]]:
    """One row per group, in order. Missed is as the call log says: inbound calls nobody
    answered. ``period`` (since, until: aware, until excluded) adds the groups of the
    period that had no calls; the caller keeps it to a sensible length (days are one row
    each)."""
    within = timedelta(minutes=callback_minutes)
    quiet = period_keys(grouping, tz, *period) if period else []
    groups: defaultdict[str, _Totals] = defaultdict(_Totals, {key: _Totals() for key in quiet})
    for call in calls:
        for key in _keys(call, grouping, tz):
            totals = groups[key]
            totals.calls += 1
            kind = _kind(call, key if grouping == "operator" else None)
            setattr(totals, kind, getattr(totals, kind) + 1)
            if kind == "outgoing" and call.was_answered:
                totals.outgoing_answered += 1
            if kind == "answered":
                if call.wait_seconds is not None:
                    totals.waits.append(call.wait_seconds)
                if call.talk_seconds is not None:
                    totals.talks.append(call.talk_seconds)
            if kind == "missed" and call.callback_after is not None:
                if call.callback_after <= within:
                    totals.called_back += 1
    return [_row(key, groups[key]) for key in sorted(groups, key=_order)]


def _kind(call: ReportCall, operator: str | None) -> str:
    """Which of the row's adding-up columns the call counts in, for ``operator`` (None:
    a day or hour row)."""
    placed = call.direction == "outbound" or (
        call.direction == "internal" and (operator is None or operator == call.caller)
    )
    if placed:
        return "outgoing"
    if operator is None:
        answered_here = call.was_answered
    else:
        answered_here = call.answered_by == operator
    if answered_here:
        return "answered"
    if call.was_answered:
        return "answered_elsewhere"
    if call.unknown:
        return "unknown"
    return "missed" if call.missed else "not_answered"


def _keys(call: ReportCall, grouping: Grouping, tz: ZoneInfo) -> list[str]:
    local = call.started_at.astimezone(tz)
    if grouping == "day":
        return [local.date().isoformat()]
    if grouping == "hour":
        return [f"{local.hour:02d}:00"]
    operators = set(call.rang)
    for extension in (call.answered_by, call.caller):
        if extension:
            operators.add(extension)
    return sorted(operators)


def period_keys(grouping: Grouping, tz: ZoneInfo, since: datetime, until: datetime) -> list[str]:
    """The day (``YYYY-MM-DD``) or hour-of-the-day (``HH:00``) groups that [since, until)
    covers in ``tz``, in order; none per operator (operators are not a calendar)."""
    if grouping == "operator" or until <= since:
        return []
    if grouping == "day":
        first = since.astimezone(tz).date()
        last = (until - timedelta(microseconds=1)).astimezone(tz).date()
        return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]
    # Every UTC offset in use is a multiple of 15 minutes, so a local hour starts (and a
    # clock jumps) only on a UTC quarter hour: looking at each is looking at every hour.
    hours: set[int] = set()
    at = since.astimezone(UTC)
    while at < until and len(hours) < 24:
        hours.add(at.astimezone(tz).hour)
        at = at.replace(minute=at.minute - at.minute % 15, second=0, microsecond=0) + QUARTER
    return [f"{hour:02d}:00" for hour in sorted(hours)]


def _order(key: str) -> tuple[int, str]:
    return (int(key), key) if key.isdigit() else (0, key)


def _row(key: str, totals: _Totals) -> dict[str, object]:
    def average(values: list[float]) -> float | None:
        return round(sum(values) / len(values), 1) if values else None

    values = (
        key,
        totals.calls,
        totals.answered,
        totals.answered_elsewhere,
        totals.missed,
        totals.not_answered,
        totals.unknown,
        totals.outgoing,
        totals.outgoing_answered,
        round(totals.missed / totals.calls, 3) if totals.calls else None,
        average(totals.waits),
        average(totals.talks),
        totals.called_back,
    )
    return dict(zip(COLUMNS, values, strict=True))
