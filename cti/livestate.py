"""The live feed's current state, kept from the frames themselves: the cards of the calls
in progress, every line and every link, as a ``resync`` carries them.

One node knows its own state from its parts (``cti.live``); when several nodes share one
stream of frames (``cti.cluster``), each keeps this instead, from every frame it passes
on, whichever node made it: a card replaces the one of its call (an ended one goes),
a ``lines`` frame updates its lines, a ``link.state`` its link. A node that starts takes
another's copy (``snapshot``) and goes on from the seq it was taken at.
"""

from __future__ import annotations

from typing import Any


class LiveState:
    def __init__(self) -> None:
        self.seq = 0  # the last frame applied
        self.cards: dict[str, dict[str, Any]] = {}  # call id -> card, while in progress
        self.lines: dict[str, str] = {}
        self.links: dict[str, dict[str, Any]] = {}

    def apply(self, seq: int, kind: str, data: Any) -> None:
        if seq <= self.seq:
            return  # taken into a snapshot already
        self.seq = seq
        if kind == "pop":
            if data.get("state") == "ended":
                self.cards.pop(data["call_id"], None)
            else:
                self.cards[data["call_id"]] = data
        elif kind == "lines":
            self.lines.update(data)
        elif kind == "link.state":
            self.links[data["name"]] = {
                "name": data["name"],
                "kind": data.get("kind"),
                "up": data.get("up"),
                "detail": data.get("detail", ""),
                "since": data.get("at"),
            }

    def visible(self, sees_all: bool, extension: str | None) -> list[dict[str, Any]]:
        return [card for card in self.cards.values() if sees_all or extension in card["extensions"]]

    def snapshot(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "cards": list(self.cards.values()),
            "lines": dict(self.lines),
            "links": list(self.links.values()),
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Another node's copy, taken at its seq: what this node has applied since goes
        on top (``apply`` skips what the copy holds already)."""
        self.seq = snapshot["seq"]
        self.cards = {card["call_id"]: card for card in snapshot["cards"]}
        self.lines = dict(snapshot["lines"])
        self.links = {link["name"]: link for link in snapshot["links"]}
