"""Call reports for supervisors: per day, per hour of the day, or per operator (pure).

Rows in are the calls of a period (``ReportCall``), grouped in the supervisor's time
zone; rows out have the counts and averages a supervisor reads. "Called back within N
minutes": a missed call whose callback task was closed by a conversation (a callback, or
the client calling again and being answered) within N minutes of the missed call.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

Grouping = Literal["day", "hour", "operator"]


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


@dataclass(slots=True)
class _Totals:
    calls: int = 0
    answered: int = 0
    missed: int = 0
    waits: list[float] = field(default_factory=list)
    talks: list[float] = field(default_factory=list)
    called_back: int = 0


def build_report(
    calls: list[ReportCall], grouping: Grouping, tz: ZoneInfo, callback_minutes: int
) -> list[dict[str, object]]:
    """One row per group, in order. Missed is as the call log says: inbound calls nobody
    answered."""
    within = timedelta(minutes=callback_minutes)
    groups: defaultdict[str, _Totals] = defaultdict(_Totals)
    for call in calls:
        for key in _keys(call, grouping, tz):
            totals = groups[key]
            totals.calls += 1
            answered_here = call.answered_by is not None and (
                grouping != "operator" or call.answered_by == key
            )
            if answered_here:
                totals.answered += 1
                if call.wait_seconds is not None:
                    totals.waits.append(call.wait_seconds)
                if call.talk_seconds is not None:
                    totals.talks.append(call.talk_seconds)
            if call.missed:
                totals.missed += 1
                if call.callback_after is not None and call.callback_after <= within:
                    totals.called_back += 1
    return [_row(key, groups[key]) for key in sorted(groups, key=_order)]


def _keys(call: ReportCall, grouping: Grouping, tz: ZoneInfo) -> list[str]:
    local = call.started_at.astimezone(tz)
    if grouping == "day":
        return [local.date().isoformat()]
    if grouping == "hour":
        return [f"{local.hour:02d}:00"]
    operators = set(call.rang)
    if call.answered_by:
        operators.add(call.answered_by)
    return sorted(operators)


def _order(key: str) -> tuple[int, str]:
    return (int(key), key) if key.isdigit() else (0, key)


def _row(key: str, totals: _Totals) -> dict[str, object]:
    def average(values: list[float]) -> float | None:
        return round(sum(values) / len(values), 1) if values else None

    return {
        "key": key,
        "calls": totals.calls,
        "answered": totals.answered,
        "missed": totals.missed,
        "missed_rate": round(totals.missed / totals.calls, 3) if totals.calls else 0.0,
        "average_wait_seconds": average(totals.waits),
        "average_talk_seconds": average(totals.talks),
        "called_back_in_time": totals.called_back,
    }
