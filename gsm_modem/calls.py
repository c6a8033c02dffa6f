"""Calls to the SIM card, as the core knows calls (sans-I/O).

A GSM modem cannot put a caller through to anyone: nobody answers it. A call to the SIM
still matters: it pops up on the screens of the configured extensions while it rings,
and once it stops ringing it is a missed call, so a callback task reminds someone.
The caller hung up before ringing stopped? The modem cannot tell; "abandoned" is what
every modem call ends as, and it counts as missed.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from cti.calls import Call, CallLeg
from cti.domain import Direction, LegResult, Outcome
from cti.events import CallEnded, CallRinging, DomainEvent
from cti.phone import to_e164


class GsmCalls:
    def __init__(self, modem: str, ring_extensions: list[str], region: str) -> None:
        self.modem = modem
        # Without extensions of its own, the call rings "on the modem" (receptionists see it).
        self.ring_extensions = ring_extensions or [modem]
        self.region = region
        self.call: Call | None = None

    def ringing(self, number: str | None, now: datetime) -> tuple[list[DomainEvent], Call | None]:
        """The SIM is ringing; the events and the new call (None when already ringing)."""
        if self.call is not None:
            return [], None
        external = to_e164(number, self.region) or number
        call = self.call = Call(
            id=f"{self.modem}-{uuid.uuid4().hex[:12]}",
            pbx=self.modem,
            started_at=now,
            direction=Direction.INBOUND,
            external_number=external,
            legs=[CallLeg(extension, now) for extension in self.ring_extensions],
        )
        events: list[DomainEvent] = [
            CallRinging(
                call_id=call.id,
                extension=extension,
                direction=Direction.INBOUND,
                external_number=external,
                at=now,
            )
            for extension in self.ring_extensions
        ]
        return events, call

    def ended(self, now: datetime) -> tuple[list[DomainEvent], Call | None]:
        """Ringing stopped: a missed call."""
        call, self.call = self.call, None
        if call is None:
            return [], None
        for leg in call.legs:
            leg.ended_at, leg.result = now, LegResult.NO_ANSWER
        call.ended_at, call.outcome, call.missed = now, Outcome.ABANDONED, True
        event = CallEnded(
            call_id=call.id,
            outcome=Outcome.ABANDONED,
            missed=True,
            involved_extensions=tuple(self.ring_extensions),
            at=now,
        )
        return [event], call
