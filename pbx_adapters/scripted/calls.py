"""The scripted PBX's calls: steps in, core call events out (sans-I/O: the time is
given, nothing waits)."""

from __future__ import annotations

from datetime import datetime

from cti.calls import Call, CallLeg, CallTransfer
from cti.domain import Direction, LegResult, LineState, Outcome, TransferKind
from cti.events import (
    CallAnswered,
    CallEnded,
    CallRinging,
    CallTransferred,
    DomainEvent,
    LineStateChanged,
)
from cti.phone import to_e164
from pbx_adapters.scripted.settings import Step


class ScriptedCalls:
    def __init__(self, pbx: str, region: str) -> None:
        self.pbx = pbx
        self.region = region
        self.calls: dict[str, Call] = {}  # live ones, by the core's id
        self.lines: dict[str, LineState] = {}
        self.changed: dict[str, Call] = {}

    def call_id(self, name: str) -> str:
        return f"{self.pbx}:{name}"

    def apply(self, step: Step, now: datetime) -> list[DomainEvent]:
        if step.event == "line":
            self.lines[step.extension] = step.state or LineState.IDLE
            return [LineStateChanged(extension=step.extension, state=self.lines[step.extension])]
        if step.event == "ring":
            return self._ring(step, now)
        call = self.calls.get(self.call_id(step.call))
        if call is None:
            raise ValueError(f"step {step.event!r}: no call {step.call!r} is ringing")
        self.changed[call.id] = call
        if step.event == "answer":
            return self._answer(call, step.extension, now)
        if step.event == "transfer":
            return self._transfer(call, step.extension, now)
        return self._end(call, step.outcome, now)

    def take_changed(self) -> list[Call]:
        changed, self.changed = list(self.changed.values()), {}
        return changed

    def _ring(self, step: Step, now: datetime) -> list[DomainEvent]:
        call_id = self.call_id(step.call)
        call = self.calls.get(call_id)
        if call is None:
            call = self.calls[call_id] = Call(
                call_id,
                self.pbx,
                now,
                direction=Direction.INBOUND,
                external_number=to_e164(step.number, self.region) or step.number or None,
                external_name=step.name or None,
                pbx_ref={"script": step.call},
            )
        call.legs.append(CallLeg(step.extension, now))
        self.changed[call_id] = call
        return [
            CallRinging(
                call_id=call_id,
                extension=step.extension,
                direction=Direction.INBOUND,
                external_number=call.external_number,
                external_name=call.external_name,
            )
        ]

    def _answer(self, call: Call, extension: str, now: datetime) -> list[DomainEvent]:
        for leg in call.legs:
            if not leg.ringing:
                continue
            if leg.extension == extension:
                leg.answered_at = now
            else:  # answered elsewhere
                leg.ended_at, leg.result = now, LegResult.CANCELLED
        call.answered_by, call.answered_at = extension, call.answered_at or now
        return [
            CallAnswered(
                call_id=call.id, extension=extension, involved_extensions=call.extensions()
            )
        ]

    def _transfer(self, call: Call, extension: str, now: datetime) -> list[DomainEvent]:
        source = call.answered_by
        for leg in call.legs:
            if leg.active:
                leg.ended_at, leg.result = now, leg.result or LegResult.ANSWERED
        call.legs.append(CallLeg(extension, now, answered_at=now))
        call.transfers.append(CallTransfer(TransferKind.BLIND, source, extension, now))
        call.answered_by = extension
        return [
            CallTransferred(
                call_id=call.id,
                kind=TransferKind.BLIND,
                from_extension=source,
                to_extension=extension,
                involved_extensions=call.extensions(),
            )
        ]

    def _end(self, call: Call, outcome: Outcome | None, now: datetime) -> list[DomainEvent]:
        del self.calls[call.id]
        answered = call.answered_at is not None
        for leg in call.legs:
            if leg.active:
                leg.ended_at = now
                leg.result = leg.result or (
                    LegResult.ANSWERED if leg.answered_at else LegResult.NO_ANSWER
                )
        call.ended_at = now
        call.outcome = outcome or (Outcome.ANSWERED if answered else Outcome.NO_ANSWER)
        call.missed = call.outcome in (Outcome.NO_ANSWER, Outcome.ABANDONED)
        return [
            CallEnded(
                call_id=call.id,
                outcome=call.outcome,
                missed=call.missed,
                involved_extensions=call.extensions(),
            )
        ]
