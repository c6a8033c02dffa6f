"""What a record parser says of each line, whatever the PBX: a call (or part of one),
a line that is not a call (a page header, a log-in notice), or a line it cannot read."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

from cti.calls import Call


@dataclass(frozen=True, slots=True)
class Skipped:
    """A line that is no call record and needs none: headers, status notices."""

    line: str
    reason: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """A line that should have been a call record and could not be read."""

    line: str
    reason: str


Decoded = Call | Skipped | Rejected


class RecordDecoder(Protocol):
    """One PBX's records to calls (sans-I/O). A decoder may hold a record back until
    the next one says what it belongs to; ``flush`` gives up waiting (the stream went
    quiet, or the service stops)."""

    def feed(self, line: str) -> list[Decoded]: ...

    def flush(self) -> list[Decoded]: ...


def record_call_id(pbx: str, key: str) -> str:
    """A call's id made of what identifies its record: the same record, replayed after
    a reconnect or a restart, is the same call (stored once)."""
    return f"{pbx}:{hashlib.sha256(key.encode()).hexdigest()[:24]}"
