"""The live feed behind /ws: the bus, through the pop cards, into the numbered stream.

Two pieces do the work: ``cti.cards`` turns call and line-state events into ``pop`` and
``lines`` frames (and loads a card's history), ``cti.feed`` numbers frames, keeps them
for replay and fans them out to viewers. This is the bus subscriber between them: each
event goes to the cards, then out as a frame of its own (``call.ringing`` ... to whom
it concerns, ``link.state`` to everyone; line states only coalesced, as ``lines``).

``LiveFeed`` is the feed itself (the WebSocket handler attaches viewers to it), with the
cards and the bus added, so the service builds and stops one object. It is a listener of
the bus (``EventBus.listen``): each event is shown in its publisher's turn, so a pop
leaves in the same turn of the loop as the PBX frame that made it, queued behind nothing.

The domain events behind the pops (``call.ringing`` ... ``call.ended``) double the
frames and the desktop does not need them; a client asks for them (``?events=calls``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from cti.bus import EventBus
from cti.cards import Enricher, IdentifyNow, PopCards
from cti.events import DomainEvent, LineStateChanged, describe
from cti.feed import Feed, FeedFrame, Viewer, json_dumps

__all__ = ["Enricher", "FeedFrame", "LiveFeed", "Viewer", "json_dumps"]

log = logging.getLogger("cti.live")

PUBLIC_EVENTS = frozenset({"link.state"})
CALL_EVENTS = frozenset(
    {"call.ringing", "call.identified", "call.answered", "call.transferred", "call.ended"}
)


class LiveFeed(Feed):
    def __init__(
        self,
        bus: EventBus,
        *,
        lines: Callable[[], dict[str, str]],
        line_of: Callable[[str], str | None],
        links: Callable[[], list[dict[str, Any]]],
        enrich: Enricher | None = None,
        identify_now: IdentifyNow | None = None,
        replay_seconds: float = 120.0,
        replay_frames: int = 20_000,
        send_buffer: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            state=self._state,
            replay_seconds=replay_seconds,
            replay_frames=replay_frames,
            send_buffer=send_buffer,
            clock=clock,
        )
        self.bus = bus
        self.lines = lines
        self.links = links
        self.cards = PopCards(
            self.append,
            line_of=line_of,
            enrich=enrich,
            identify_now=identify_now,
            viewers=self.viewers,
        )
        self.board = self.cards.board
        self._stop_listening: Callable[[], None] = lambda: None

    def start(self) -> None:
        self._stop_listening = self.bus.listen(self._on_event, name="live-feed")

    async def stop(self) -> None:
        super().stop()
        self._stop_listening()
        await self.cards.stop()

    def handle(self, event: DomainEvent) -> None:
        self.cards.handle(event)
        if isinstance(event, LineStateChanged):
            return  # goes out coalesced, in a ``lines`` frame
        audience = None if event.type in PUBLIC_EVENTS else event.extensions()
        self.append(event.type, audience, event.to_dict(), call_event=event.type in CALL_EVENTS)

    def _on_event(self, event: DomainEvent) -> None:
        try:
            self.handle(event)
        except Exception:
            # One event that cannot be shown must not stop everyone's pops.
            log.exception("live feed skipped an event", extra={"fields": describe(event)})

    def _state(self, viewer: Viewer) -> dict[str, Any]:
        """What a resync carries: the viewer's cards, every line and every link."""
        lines = self.lines()
        pops = self.cards.visible(viewer.sees_all, viewer.extension, lines.get)
        return {"pops": pops, "lines": lines, "links": self.links()}
