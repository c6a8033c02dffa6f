"""Avaya IP Office SMDR records (sans-I/O): one CSV line per call segment.

Fields, as the IP Office manuals number them: 1 Call Start (YYYY/MM/DD HH:MM:SS, the
same on every segment of a call), 2 Connected Time (HH:MM:SS), 3 Ring Time (s),
4 Caller, 5 Direction (I/O; internal calls are O), 6 Called Number, 7 Dialled Number,
8 Account, 9 Is Internal (0/1), 10 Call ID, 11 Continuation (1: more segments follow),
12/13 Party1Device/Name, 14/15 Party2Device/Name (E<ext>, T<9000+line>, V<8000+n>
voicemail), 16 Hold Time (s), 17 Park Time (s), 18 AuthValid, 19 AuthCode, 20-27 the
advice-of-charge fields, 28-30 External Targeting Cause, Targeter Id, Targeted
Number; R11 adds the caller's and called party's server address and unique call id
and the record time. Older releases stop at field 17 or 27: those are read too.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import datetime

from pbx_adapters.smdr.records import Rejected, Skipped

MIN_FIELDS = 17
DURATION = re.compile(r"^(?P<h>\d{1,4}):(?P<m>[0-5]\d):(?P<s>[0-5]\d)$")
DEVICE = re.compile(r"^(?P<kind>[ETVU])(?P<id>\S*)$")


@dataclass(frozen=True, slots=True)
class Party:
    device: str  # E201, T9001, V9051, ... as printed
    name: str

    @property
    def kind(self) -> str:
        """ "E" an extension, "T" a trunk line, "V" voicemail or another system
        resource, "U" a conference; "" what the record did not say."""
        found = DEVICE.match(self.device)
        return found["kind"] if found else ""

    @property
    def extension(self) -> str | None:
        return self.device[1:] if self.kind == "E" and self.device[1:].isdigit() else None


@dataclass(frozen=True, slots=True)
class AvayaSegment:
    line: str
    call_start: datetime  # the IP Office's wall clock
    connected_seconds: int
    ring_seconds: int
    caller: str
    inbound: bool
    called: str
    dialled: str
    account: str
    is_internal: bool
    call_id: str
    continues: bool
    party1: Party
    party2: Party
    hold_seconds: int
    park_seconds: int
    targeted_number: str = ""  # where the IP Office sent the call off-switch, if it did

    @property
    def total_seconds(self) -> int:
        return self.connected_seconds + self.ring_seconds + self.hold_seconds + self.park_seconds

    @property
    def parties(self) -> tuple[Party, Party]:
        return self.party1, self.party2


def parse_line(line: str) -> AvayaSegment | Skipped | Rejected:
    if line.startswith("Call Start"):
        return Skipped(line, "column header")
    try:
        fields = next(csv.reader([line]))
    except (csv.Error, StopIteration) as e:
        return Rejected(line, f"not CSV: {e}")
    if len(fields) < MIN_FIELDS:
        return Rejected(line, f"{len(fields)} fields, an SMDR record has at least {MIN_FIELDS}")
    fields = [f.strip() for f in fields]
    try:
        return AvayaSegment(
            line=line,
            call_start=_start(fields[0]),
            connected_seconds=_duration(fields[1], "Connected Time"),
            ring_seconds=_seconds(fields[2], "Ring Time"),
            caller=fields[3],
            inbound=_choice(fields[4], {"I": True, "O": False}, "Direction"),
            called=fields[5],
            dialled=fields[6],
            account=fields[7],
            is_internal=_choice(fields[8], {"1": True, "0": False, "": False}, "Is Internal"),
            call_id=_call_id(fields[9]),
            continues=_choice(fields[10], {"1": True, "0": False}, "Continuation"),
            party1=Party(fields[11], fields[12]),
            party2=Party(fields[13], fields[14]),
            hold_seconds=_seconds(fields[15], "Hold Time"),
            park_seconds=_seconds(fields[16], "Park Time"),
            targeted_number=fields[29] if len(fields) > 29 else "",
        )
    except ValueError as e:
        return Rejected(line, str(e))


def _start(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y/%m/%d %H:%M:%S")
    except ValueError:
        raise ValueError(f"Call Start {text!r} is not YYYY/MM/DD HH:MM:SS") from None


def _duration(text: str, name: str) -> int:
    found = DURATION.match(text)
    if found is None:
        raise ValueError(f"{name} {text!r} is not HH:MM:SS")
    return int(found["h"]) * 3600 + int(found["m"]) * 60 + int(found["s"])


def _seconds(text: str, name: str) -> int:
    if not text.isdigit() or len(text) > 7:
        raise ValueError(f"{name} {text!r} is not a number of seconds")
    return int(text)


def _choice(text: str, values: dict[str, bool], name: str) -> bool:
    if text not in values:
        raise ValueError(f"{name} {text!r} is not one of {', '.join(v for v in values if v)}")
    return values[text]


def _call_id(text: str) -> str:
    if not text.isdigit() or len(text) > 20:
        raise ValueError(f"Call ID {text!r} is not a number")
    return text
