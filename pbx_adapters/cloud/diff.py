"""The core events between two states of a call (sans-I/O).

A provider's book rebuilds a call from every event it has of it, in the provider's
order, whatever order they came in; what changed since the last state is what the
screens are told.
"""

from __future__ import annotations

from cti.call_events import answered, ringing, transferred
from cti.calls import Call
from cti.domain import Outcome
from cti.events import CallEnded, DomainEvent


def call_events(before: Call | None, after: Call, *, over: bool) -> list[DomainEvent]:
    """What ``after`` adds to ``before``; ``over``: nobody is on it any more (its pop
    closes), whether or not the provider has said how it ended yet."""
    events: list[DomainEvent] = []
    rung = {leg.extension for leg in before.legs} if before else set()
    for leg in after.legs:
        if leg.extension not in rung and not leg.originate:
            events.append(ringing(after, leg.extension, leg.ring_started_at))
            rung.add(leg.extension)
    if after.answered_by and (before is None or before.answered_by is None):
        events.append(answered(after, after.answered_by, after.answered_at or after.started_at))
    for transfer in after.transfers[len(before.transfers) if before else 0 :]:
        events.append(transferred(after, transfer))
    if over:
        outcome = after.outcome or (Outcome.ANSWERED if after.answered_at else Outcome.NO_ANSWER)
        events.append(
            CallEnded(
                call_id=after.id,
                outcome=outcome,
                missed=after.missed,
                involved_extensions=after.extensions(),
                at=after.ended_at or after.started_at,
            )
        )
    return events
