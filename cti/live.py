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

With several nodes (``cti.cluster``) the frames are shared: what this node's cards make
goes to ``share`` (a stream all nodes follow) instead of straight to its viewers, and
every frame of that stream comes back through ``take``, numbered by the stream, whichever
node made it. The state a resync carries is then kept from the frames (``LiveState``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from cti.bus import EventBus
from cti.cards import Enricher, IdentifyNow, PopCards
from cti.events import DomainEvent, LineStateChanged, describe
from cti.feed import Feed, FeedFrame, Viewer, json_dumps
from cti.livestate import LiveState
from cti.screenpop import PopCard

__all__ = ["Enricher", "FeedFrame", "LiveFeed", "Viewer", "json_dumps"]

log = logging.getLogger("cti.live")

PUBLIC_EVENTS = frozenset({"link.state"})
RESUME_WAIT_SECONDS = 1.0  # a resume asks for a frame this node has not taken yet: wait
# (kind, audience, data, call event): a frame for the stream the nodes share
Share = Callable[[str, frozenset[str] | None, Any, bool], None]
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
        share: Share | None = None,
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
        self.share = share
        self.shared = LiveState() if share is not None else None
        self._taken = asyncio.Event()  # a frame of the shared stream came
        self.cards = PopCards(
            self._emit,
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
        self._emit(event.type, audience, event.to_dict(), call_event=event.type in CALL_EVENTS)

    def _emit(
        self, kind: str, audience: frozenset[str] | None, data: Any, *, call_event: bool = False
    ) -> None:
        if self.share is None:
            self.append(kind, audience, data, call_event=call_event)
        else:
            self.share(kind, audience, data, call_event)

    # -- the stream the nodes share -----------------------------------------------------

    def take(
        self, seq: int, kind: str, audience: frozenset[str] | None, data: Any, call_event: bool
    ) -> None:
        """A frame of the shared stream (any node's), numbered by it."""
        if seq <= self.head:
            return  # had it already (the stream's consumer started over)
        assert self.shared is not None
        self.shared.apply(seq, kind, data)
        self.deliver(seq, kind, audience, data, call_event=call_event)
        self._taken.set()

    async def ready_for(self, stream: str | None, last_seq: int | None) -> None:
        """Before a client resumes from ``last_seq``: wait a moment if the stream has gone
        that far and this node has not followed it there yet (it reconnected here from a
        node that was ahead)."""
        if self.shared is None or stream != self.stream or last_seq is None:
            return
        deadline = asyncio.get_running_loop().time() + RESUME_WAIT_SECONDS
        while self.head < last_seq:
            self._taken.clear()
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            try:
                async with asyncio.timeout(remaining):
                    await self._taken.wait()
            except TimeoutError:
                return

    def restore_shared(self, snapshot: dict[str, Any]) -> None:
        """Another node's copy of the state, at a starting node: the frames this one has
        taken since that copy was made go on top of it."""
        assert self.shared is not None
        self.shared.restore(snapshot)
        for frame in self._journal:
            if frame.seq > snapshot["seq"] and frame.data is not None:
                self.shared.apply(frame.seq, frame.kind, frame.data)

    def forget(self, pbx: str) -> None:
        """Drop the cards of ``pbx``'s calls: another node leads it now."""
        prefix = f"{pbx}:"
        for call_id in [c for c in self.board.cards if c.startswith(prefix)]:
            del self.board.cards[call_id]

    def adopt(self, pbx: str) -> int:
        """Take over the cards of ``pbx``'s calls in progress, made by the node that led it
        before (from the shared state), so that they go on changing here; how many."""
        if self.shared is None:
            return 0
        prefix = f"{pbx}:"  # a call's id starts with its PBX's name
        cards = [c for c in self.shared.cards.values() if c["call_id"].startswith(prefix)]
        for card in cards:
            self.board.cards.setdefault(card["call_id"], PopCard.from_dict(card))
        return len(cards)

    def _on_event(self, event: DomainEvent) -> None:
        try:
            self.handle(event)
        except Exception:
            # One event that cannot be shown must not stop everyone's pops.
            log.exception("live feed skipped an event", extra={"fields": describe(event)})

    def _state(self, viewer: Viewer) -> dict[str, Any]:
        """What a resync carries: the viewer's cards, every line and every link."""
        if self.shared is not None:
            return {
                "pops": self.shared.visible(viewer.sees_all, viewer.extension),
                "lines": dict(self.shared.lines),
                "links": list(self.shared.links.values()),
            }
        lines = self.lines()
        pops = self.cards.visible(viewer.sees_all, viewer.extension, lines.get)
        return {"pops": pops, "lines": lines, "links": self.links()}
