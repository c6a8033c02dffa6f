"""Screen-pop cards: the live calls as the desktop shows them (sans-I/O).

``PopBoard.feed`` takes domain events and returns the card they changed, if any. A card
holds everything the pop shows: the number, who it is, who is ringing, who answered, the
directory's answer, recent history and open tasks. The cards (cti.cards) send the whole
card through the feed (cti.feed) each time it changes, so a client only ever replaces a
card by its call id.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import phonenumbers

from cti.domain import Direction
from cti.events import (
    CallAnswered,
    CallEnded,
    CallIdentified,
    CallRinging,
    CallTransferred,
    DomainEvent,
)

PopState = Literal["ringing", "answered", "ended"]
# "shared": several clients have the number (match holds them as shared_by): none picked.
LookupState = Literal["pending", "found", "shared", "unknown", "unavailable"]


@functools.lru_cache(maxsize=4096)  # a card is sent several times; parsing is slow
def display_number(e164: str | None) -> str | None:
    """'+78125550101' -> '+7 812 555-01-01'; anything that does not parse as it came."""
    if not e164:
        return e164
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


@dataclass(slots=True)
class PopCard:
    call_id: str
    direction: str
    number: str | None
    caller_name: str | None
    started_at: str
    state: PopState = "ringing"
    ringing: list[str] = field(default_factory=list)
    answered_by: str | None = None
    extensions: list[str] = field(default_factory=list)
    answered_at: str | None = None
    ended_at: str | None = None
    outcome: str | None = None
    missed: bool = False
    lookup: LookupState = "pending"
    match: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)

    def involve(self, *extensions: str | None) -> None:
        for extension in extensions:
            if extension and extension not in self.extensions:
                self.extensions.append(extension)

    @classmethod
    def from_dict(cls, card: dict[str, Any]) -> PopCard:
        """The card back from ``to_dict`` (another node made it): the directory's answer
        as far as the card shows it."""
        match: dict[str, Any] | None = None
        if card.get("shared_by") is not None:
            match = {"shared_by": card["shared_by"]}
        elif card.get("client") is not None:
            client = card["client"]
            match = {
                "client_id": client.get("id"),
                "client_name": client.get("name"),
                "kind": client.get("kind"),
                "tags": client.get("tags") or [],
                "crm_url": client.get("crm_url"),
                "contact_name": card.get("contact"),
            }
            manager = card.get("manager")
            if manager is not None:
                match["manager"] = {
                    "name": manager.get("name"),
                    "extension": manager.get("extension"),
                }
        return cls(
            call_id=card["call_id"],
            direction=card["direction"],
            number=card.get("number"),
            caller_name=card.get("caller_name"),
            started_at=card["started_at"],
            state=card.get("state", "ringing"),
            ringing=list(card.get("ringing") or []),
            answered_by=card.get("answered_by"),
            extensions=list(card.get("extensions") or []),
            answered_at=card.get("answered_at"),
            ended_at=card.get("ended_at"),
            outcome=card.get("outcome"),
            missed=bool(card.get("missed")),
            lookup=card.get("lookup", "pending"),
            match=match,
            history=list(card.get("history") or []),
            tasks=list(card.get("tasks") or []),
        )

    def to_dict(self, line_of: Callable[[str], str | None] | None = None) -> dict[str, Any]:
        """The card as the live feed sends it; ``line_of`` gives the manager's line state."""
        match = self.match or {}
        manager = match.get("manager")
        if manager is not None:
            extension = manager.get("extension")
            manager = {
                "name": manager.get("name"),
                "extension": extension,
                "line_state": line_of(extension) if line_of and extension else None,
            }
        client = None
        if self.match is not None and "shared_by" not in match:
            client = {
                "id": match.get("client_id"),
                "name": match.get("client_name"),
                "kind": match.get("kind"),
                "tags": match.get("tags") or [],
                "crm_url": match.get("crm_url"),
            }
        return {
            "call_id": self.call_id,
            "direction": self.direction,
            "state": self.state,
            "number": self.number,
            "number_display": display_number(self.number),
            "caller_name": self.caller_name,
            "ringing": list(self.ringing),
            "answered_by": self.answered_by,
            "extensions": list(self.extensions),
            "started_at": self.started_at,
            "answered_at": self.answered_at,
            "ended_at": self.ended_at,
            "outcome": self.outcome,
            "missed": self.missed,
            "lookup": self.lookup,
            "client": client,
            "shared_by": match.get("shared_by"),
            "contact": match.get("contact_name"),
            "manager": manager,
            "history": list(self.history),
            "tasks": list(self.tasks),
        }


class PopBoard:
    """The cards of the calls in progress, kept up to date from call events."""

    def __init__(self) -> None:
        self.cards: dict[str, PopCard] = {}

    def feed(self, event: DomainEvent) -> PopCard | None:
        """Apply one event; the card it changed (an ended card leaves the board)."""
        if isinstance(event, CallRinging):
            return self._ringing(event)
        card = self.cards.get(getattr(event, "call_id", ""))
        if card is None:
            return None
        if isinstance(event, CallIdentified):
            return self._identified(card, event)
        if isinstance(event, CallAnswered):
            if event.extension is None:  # the outside party or a fax machine answered
                if card.direction != Direction.OUTBOUND:
                    return None
                # Click-to-dial: the number called answered; the operator is talking now.
                card.state = "answered"
                card.answered_at = event.at.isoformat()
                card.ringing.clear()
                return card
            card.state, card.answered_by = "answered", event.extension
            card.answered_at = event.at.isoformat()
            card.ringing.clear()
            card.involve(event.extension, *event.involved_extensions)
            return card
        if isinstance(event, CallTransferred):
            card.involve(event.from_extension, event.to_extension, *event.involved_extensions)
            return card
        if isinstance(event, CallEnded):
            del self.cards[card.call_id]
            card.state, card.outcome, card.missed = "ended", event.outcome.value, event.missed
            card.ended_at = event.at.isoformat()
            card.ringing.clear()
            card.involve(*event.involved_extensions)
            return card
        return None

    def enrich(
        self, call_id: str, history: list[dict[str, Any]], tasks: list[dict[str, Any]]
    ) -> PopCard | None:
        card = self.cards.get(call_id)
        if card is None or (card.history == history and card.tasks == tasks):
            return None
        card.history, card.tasks = history, tasks
        return card

    def _ringing(self, event: CallRinging) -> PopCard | None:
        card = self.cards.get(event.call_id)
        if card is None:
            card = self.cards[event.call_id] = PopCard(
                call_id=event.call_id,
                direction=event.direction.value,
                number=event.external_number,
                caller_name=event.external_name,
                started_at=event.at.isoformat(),
            )
        elif event.extension in card.ringing:
            return None
        card.ringing.append(event.extension)
        card.involve(event.extension)
        if card.caller_name is None and event.external_name:
            card.caller_name = event.external_name
        return card

    def _identified(self, card: PopCard, event: CallIdentified) -> PopCard | None:
        if event.match is not None:
            if card.match == event.match:
                return None
            card.match = event.match
            card.lookup = "shared" if "shared_by" in event.match else "found"
        elif card.lookup == "found":
            return None  # another extension's lookup failed; keep the answer we have
        else:
            lookup: LookupState = "unavailable" if event.unavailable else "unknown"
            if card.lookup == lookup:
                return None
            card.lookup = lookup
        return card
