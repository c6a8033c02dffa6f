"""The normalized call: what every PBX adapter produces and the call log stores."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from cti.domain import Direction, LegResult, Outcome, TransferKind


@dataclass(slots=True)
class CallLeg:
    """One extension's ringing within a call."""

    extension: str
    ring_started_at: datetime
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    result: LegResult | None = None
    # The operator's own phone ringing first for click-to-dial: not someone answering.
    originate: bool = False

    @property
    def active(self) -> bool:
        return self.ended_at is None

    @property
    def ringing(self) -> bool:
        return self.ended_at is None and self.answered_at is None


@dataclass(slots=True)
class CallTransfer:
    kind: TransferKind
    from_extension: str | None
    to: str | None  # an extension, or a number for a transfer out
    at: datetime


@dataclass(slots=True)
class FaxInfo:
    pages: int
    file: str | None
    remote_station: str | None = None  # the sender's station id (CSID), when it sent one
    status: str | None = None  # "received" or "failed"


@dataclass(slots=True)
class Call:
    id: str
    pbx: str
    started_at: datetime
    direction: Direction | None = None
    external_number: str | None = None  # E.164 when it is a valid number, else as the PBX sent it
    external_name: str | None = None
    did: str | None = None
    queue: str | None = None
    caller_extension: str | None = None  # who placed an outbound or internal call
    legs: list[CallLeg] = field(default_factory=list)
    answered_by: str | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    transfers: list[CallTransfer] = field(default_factory=list)
    recordings: list[str] = field(default_factory=list)
    fax: FaxInfo | None = None
    outcome: Outcome | None = None
    missed: bool = False
    # Ended while the PBX link was down (or the service was)...
    ended_while_disconnected: bool = False
    # ...so its end was not seen: ended_at is only the last moment it was known to go
    # on, and no talk (or, unanswered, wait) time is made of it.
    end_unknown: bool = False
    # What the live feed missed (the call, or how it ended) was read from the PBX's own
    # call records (Asterisk's CDR) afterwards.
    recovered_from_cdr: bool = False
    originate_id: str | None = None
    # The adapter's own references to the call (Asterisk: its Linkedid), opaque to the
    # core; kept so an adapter that restarts can find the call again.
    pbx_ref: dict[str, str] = field(default_factory=dict)

    @property
    def in_progress(self) -> bool:
        return self.ended_at is None

    @property
    def wait_seconds(self) -> float | None:
        until = self.answered_at or (None if self.end_unknown else self.ended_at)
        return None if until is None else round((until - self.started_at).total_seconds(), 3)

    @property
    def talk_seconds(self) -> float | None:
        if self.answered_at is None or self.ended_at is None or self.end_unknown:
            return None
        return round((self.ended_at - self.answered_at).total_seconds(), 3)

    @property
    def first_answered_by(self) -> str | None:
        """The extension that took the call first; ``answered_by`` is the last one (after
        transfers, whoever had it at the end)."""
        answered = [leg for leg in self.legs if leg.answered_at is not None and not leg.originate]
        if not answered:
            return None
        return min(answered, key=lambda leg: leg.answered_at or self.started_at).extension

    def extensions(self) -> tuple[str, ...]:
        """Every extension that took part: rung, answered, transferred or placed it."""
        found = dict.fromkeys(leg.extension for leg in self.legs)
        for ext in (self.caller_extension, self.answered_by):
            if ext:
                found[ext] = None
        for transfer in self.transfers:
            if transfer.from_extension:
                found[transfer.from_extension] = None
        return tuple(found)

    def participants(self) -> tuple[str, ...]:
        """The extensions that were on the call (talked), not those that only rang."""
        found = dict.fromkeys(leg.extension for leg in self.legs if leg.answered_at)
        for ext in (self.caller_extension, self.answered_by):
            if ext:
                found[ext] = None
        for transfer in self.transfers:
            for ext in (transfer.from_extension, transfer.to):
                if ext:
                    found[ext] = None
        return tuple(found)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pbx": self.pbx,
            "direction": self.direction,
            "external_number": self.external_number,
            "external_name": self.external_name,
            "did": self.did,
            "queue": self.queue,
            "caller_extension": self.caller_extension,
            "legs": [
                {
                    "extension": leg.extension,
                    "ring_started_at": _iso(leg.ring_started_at),
                    "answered_at": _iso(leg.answered_at),
                    "ended_at": _iso(leg.ended_at),
                    "result": leg.result,
                    "originate": leg.originate,
                }
                for leg in self.legs
            ],
            "answered_by": self.answered_by,
            "first_answered_by": self.first_answered_by,
            "transfers": [
                {"kind": t.kind, "from": t.from_extension, "to": t.to, "at": _iso(t.at)}
                for t in self.transfers
            ],
            "recordings": list(self.recordings),
            "fax": None
            if self.fax is None
            else {
                "pages": self.fax.pages,
                "file": self.fax.file,
                "remote_station": self.fax.remote_station,
                "status": self.fax.status,
            },
            "started_at": _iso(self.started_at),
            "answered_at": _iso(self.answered_at),
            "ended_at": _iso(self.ended_at),
            "wait_seconds": self.wait_seconds,
            "talk_seconds": self.talk_seconds,
            "outcome": self.outcome,
            "missed": self.missed,
            "in_progress": self.in_progress,
            "ended_while_disconnected": self.ended_while_disconnected,
            "end_unknown": self.end_unknown,
            "recovered_from_cdr": self.recovered_from_cdr,
            "originate_id": self.originate_id,
            "pbx_ref": dict(self.pbx_ref),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Call:
        fax = data.get("fax")
        return cls(
            id=data["id"],
            pbx=data["pbx"],
            started_at=_dt(data["started_at"]),
            direction=Direction(data["direction"]) if data.get("direction") else None,
            external_number=data.get("external_number"),
            external_name=data.get("external_name"),
            did=data.get("did"),
            queue=data.get("queue"),
            caller_extension=data.get("caller_extension"),
            legs=[
                CallLeg(
                    extension=leg["extension"],
                    ring_started_at=_dt(leg["ring_started_at"]),
                    answered_at=_dt(leg.get("answered_at")),
                    ended_at=_dt(leg.get("ended_at")),
                    result=LegResult(leg["result"]) if leg.get("result") else None,
                    originate=bool(leg.get("originate")),
                )
                for leg in data.get("legs", [])
            ],
            answered_by=data.get("answered_by"),
            answered_at=_dt(data.get("answered_at")),
            ended_at=_dt(data.get("ended_at")),
            transfers=[
                CallTransfer(TransferKind(t["kind"]), t.get("from"), t.get("to"), _dt(t["at"]))
                for t in data.get("transfers", [])
            ],
            recordings=list(data.get("recordings", [])),
            fax=FaxInfo(fax["pages"], fax.get("file"), fax.get("remote_station"), fax.get("status"))
            if fax
            else None,
            outcome=Outcome(data["outcome"]) if data.get("outcome") else None,
            missed=bool(data.get("missed")),
            ended_while_disconnected=bool(data.get("ended_while_disconnected")),
            end_unknown=bool(data.get("end_unknown")),
            recovered_from_cdr=bool(data.get("recovered_from_cdr")),
            originate_id=data.get("originate_id"),
            pbx_ref=dict(data.get("pbx_ref") or {}),
        )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


class CallSink(Protocol):
    """Where an adapter hands the calls it changed (the call store writes them)."""

    def save(self, calls: list[Call]) -> None: ...

    async def known(self, call_ids: list[str]) -> set[str]:
        """Which of these calls are stored (or waiting to be)."""
        ...
