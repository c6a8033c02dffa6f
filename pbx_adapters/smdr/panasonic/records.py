"""Panasonic KX-TDA/TDE/NS SMDR lines (sans-I/O): one printed line in, one record out.

The PBX prints fixed-width columns (pattern A: 80 columns, B: 80 with the charge, C:
120), each field separated by a space:

    Date     Time    Ext   CO Dial Number               Ring Duration Acc code   CD
    01/02/26 10:03AM 101   01 <D>0955550100<I>ИВАНОВ 8912..  0'05 00:01'05            TR

Widths differ between patterns and models (CO is 2 or 4 wide, Dial Number 25, 20 or
50), so the line is read by its field shapes rather than by column: the date, time,
extension and trunk from the left; the duration (``hh:mm'ss``) and the ring time
(``m's``) in front of it; the cost, account code and condition code after it; the dial
number is what lies between. Names in the dial number may hold spaces and digits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pbx_adapters.smdr.records import Rejected, Skipped

DateOrder = Literal["MDY", "DMY", "YMD"]

HEAD = re.compile(
    r"^(?P<date>\d\d/\d\d/\d\d)\s+(?P<star>\*)?(?P<time>\d{1,2}:\d\d(?:\s?[AP]M)?)\s+"
    r"(?P<ext>\S{1,8})(?:\s+(?P<rest>.*))?$"
)
CLOCK_CHANGED = re.compile(r"^\*\*/\*\*/\*\*")
HEADER = re.compile(r"^(?:Date\s+Time|[-=_ ]+$)", re.IGNORECASE)
# Where the next record starts inside a line: a record cut short and the next printed
# straight after it.
ANOTHER_RECORD = re.compile(r"\d\d/\d\d/\d\d\s+\*?\d{1,2}:\d\d")
CO = re.compile(r"^(?P<co>\d{2,4})(?:\s+|$)")
DURATION = re.compile(r"(?:^|\s)(?P<duration>\d{2,3}:\d\d'\d\d)(?=\s|$)")
RING = re.compile(r"(?:^|\s)(?P<ring>\d{1,3}'\d\d)\s*$")
CONDITION = re.compile(r"^(?:TR|FW|RM|NA|RC|AN|VR|VA|D\d)$")
NOTICE_CONDITIONS = {"RC", "AN", "NA", "VR", "VA"}  # printed while a call rings/is answered
COST = re.compile(r"^(?:\d+\.\d+[A-Z]{0,3}|[A-Z]{1,3}\d+\.\d+)$")
ACCOUNT = re.compile(r"^[0-9A-Za-z]{1,10}$")


@dataclass(frozen=True, slots=True)
class PanasonicRecord:
    line: str  # the record as printed, its runs of spaces made one
    printed_at: datetime  # the Date and Time columns: wall clock, minute precision
    ext: str  # the extension, or Dxxx (doorphone), Txxx (TIE line), *xxx (verified code)
    co: str | None  # the trunk; None for intercom calls
    dial: str  # the Dial Number column, stripped
    ring_seconds: int | None
    duration_seconds: int | None  # None: a notice printed without one (RC/AN/NA lines)
    cost: str | None = None
    account: str | None = None
    condition: str | None = None  # CD: TR, FW, RM, D0..., NA, RC, AN, VR, VA
    time_marked: bool = False  # "*" before the time: transferred (KX-TES/TEA models)


def split_runs(line: str) -> list[str]:
    """A line holding more than one record (the first cut short): each on its own."""
    starts = [m.start() for m in ANOTHER_RECORD.finditer(line)]
    if not starts or starts[0] != 0:
        starts = [0, *starts]
    return [line[a:b].strip() for a, b in zip(starts, [*starts[1:], len(line)], strict=True)]


def parse_line(line: str, date_order: DateOrder = "MDY") -> PanasonicRecord | Skipped | Rejected:
    text = " ".join(line.split())
    if not text or HEADER.match(text):
        return Skipped(line, "page header")
    if CLOCK_CHANGED.match(text):
        return Rejected(line, "the PBX printed ** for the time: its clock was changed mid-call")
    head = HEAD.match(text)
    if head is None:
        return Rejected(line, "not an SMDR call record (no date, time and extension)")
    try:
        printed_at = _when(head["date"], head["time"], date_order)
    except ValueError as e:
        return Rejected(line, f"bad date or time: {e}")
    rest = head["rest"] or ""
    co = None
    found = CO.match(rest)
    if found:
        co, rest = found["co"], rest[found.end() :]
    duration = None
    trailer = ""
    durations = list(DURATION.finditer(rest))
    if durations:
        last = durations[-1]
        duration = _duration(last["duration"])
        rest, trailer = rest[: last.start()], rest[last.end() :]
    else:
        words = rest.split()
        if words and words[-1] in NOTICE_CONDITIONS:
            trailer, rest = words[-1], rest.rstrip()[: -len(words[-1])]
        elif not any(ch.isdigit() for ch in rest) and "<" not in rest:
            return Skipped(line, f"not a call: {rest or head['ext']}")
        else:
            return Rejected(line, "no call duration: a record cut short or malformed")
    ring = None
    found = RING.search(rest)
    if found:
        ring = _ring(found["ring"])
        rest = rest[: found.start()]
    try:
        cost, account, condition = _trailer(trailer.split())
    except ValueError as e:
        return Rejected(line, str(e))
    return PanasonicRecord(
        line=text,
        printed_at=printed_at,
        ext=head["ext"],
        co=co,
        dial=rest.strip(),
        ring_seconds=ring,
        duration_seconds=duration,
        cost=cost,
        account=account,
        condition=condition,
        time_marked=bool(head["star"]),
    )


def _when(date: str, time: str, order: DateOrder) -> datetime:
    a, b, c = (int(part) for part in date.split("/"))
    year, month, day = {"MDY": (c, a, b), "DMY": (c, b, a), "YMD": (a, b, c)}[order]
    clock = time.replace(" ", "")
    meridiem = clock[-2:] if clock.endswith("M") else ""
    hours, minutes = clock.removesuffix(meridiem).split(":")
    hour, minute = int(hours), int(minutes)
    if meridiem:
        if not 1 <= hour <= 12:
            raise ValueError(f"{time!r} is not a 12-hour time")
        hour = hour % 12 + (12 if meridiem == "PM" else 0)
    return datetime(2000 + year, month, day, hour, minute)


def _duration(text: str) -> int:
    hours, rest = text.split(":")
    minutes, seconds = rest.split("'")
    return int(hours) * 3600 + int(minutes) * 60 + int(seconds)


def _ring(text: str) -> int:
    minutes, seconds = text.split("'")
    return int(minutes) * 60 + int(seconds)


def _trailer(words: list[str]) -> tuple[str | None, str | None, str | None]:
    """The cost, account code and condition code after the duration (each optional)."""
    cost = account = condition = None
    if words and CONDITION.match(words[-1]):
        condition = words.pop()
    for word in words:
        if cost is None and COST.match(word):
            cost = word
        elif account is None and ACCOUNT.match(word):
            account = word
        else:
            raise ValueError(f"unexpected {word!r} after the duration")
    return cost, account, condition
