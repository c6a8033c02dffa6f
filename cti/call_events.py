"""What every PBX adapter's tracker does to a normalized call, written once: the core call
events it publishes, and how a call ends (seen, or while nobody listened).

The trackers differ in how they read their PBX; a call's end and the events a screen
pops on must not.
"""

from __future__ import annotations

from datetime import datetime

from cti.calls import Call, CallTransfer
from cti.domain import Direction, LegResult, Outcome
from cti.events import CallAnswered, CallEnded, CallRinging, CallTransferred


def ringing(call: Call, extension: str, at: datetime) -> CallRinging:
    return CallRinging(
        call_id=call.id,
        extension=extension,
        direction=call.direction or Direction.INTERNAL,
        external_number=call.external_number,
        external_name=call.external_name,
        at=at,
    )


def answered(call: Call, extension: str | None, at: datetime) -> CallAnswered:
    return CallAnswered(
        call_id=call.id, extension=extension, involved_extensions=call.extensions(), at=at
    )


def transferred(call: Call, transfer: CallTransfer) -> CallTransferred:
    return CallTransferred(
        call_id=call.id,
        kind=transfer.kind,
        from_extension=transfer.from_extension,
        to_extension=transfer.to,
        involved_extensions=call.extensions(),
        at=transfer.at,
    )


def end_legs(call: Call, at: datetime, *, known: bool = True) -> None:
    """The legs still ringing end with the call: cancelled, unless how is not ``known``."""
    for leg in call.legs:
        if leg.active:
            leg.ended_at = at
            if known:
                leg.result = leg.result or LegResult.CANCELLED


def finish(call: Call, at: datetime, outcome: Outcome) -> CallEnded:
    """End ``call`` (its legs ended first: the outcome may read them) with ``outcome``
    (UNKNOWN: nobody saw how); it is missed when it came in and was not answered."""
    call.ended_at = at
    call.outcome = outcome
    call.missed = call.direction is Direction.INBOUND and outcome not in (
        Outcome.ANSWERED,
        Outcome.UNKNOWN,
    )
    return CallEnded(
        call_id=call.id,
        outcome=outcome,
        missed=call.missed,
        involved_extensions=call.extensions(),
        at=at,
    )


def mark_unseen_end(call: Call, last_heard: datetime | None) -> datetime:
    """A call that ended while nobody listened: marked so, and the moment to end it at.
    What is known stays (who answered, if that was seen); what is not is not made up: it
    ends at the last moment it was known to go on (and, unanswered, its outcome is
    unknown, not missed: the tracker's to say)."""
    call.ended_while_disconnected = call.end_unknown = True
    known = [call.started_at, call.answered_at, last_heard, *(t.at for t in call.transfers)]
    known += [x for leg in call.legs for x in (leg.ring_started_at, leg.answered_at, leg.ended_at)]
    return max(t for t in known if t is not None)
