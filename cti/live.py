"""The live feed behind /ws: one numbered stream of frames, fanned out to viewers.

Every frame gets the next ``seq`` of the stream and is serialized once, whoever receives
it. A frame's audience is the extensions it concerns (None: everyone); a viewer gets the
frames its user may see. Recent frames stay in a journal for a while, so a viewer that
reconnects with the last ``seq`` it saw gets exactly what it missed; when that is no
longer possible it gets a ``resync`` with the current state instead.

Each viewer has a bounded queue: one that cannot keep up loses its queue and is sent a
resync when it can take frames again, while everyone else goes on. Fan-out goes through
an index by extension, so a frame costs in proportion to who sees it, not to how many
are connected.

Line states change in bursts (a ring group sets several phones ringing at once) and go
to everyone, so they are coalesced into one ``lines`` frame at most every LINES_INTERVAL.

Each frame is also encoded once as a WebSocket frame (``wire``). A viewer with nothing
waiting takes it straight onto its connection's transport: no task wakes up per viewer,
which is what keeps a burst to a thousand viewers short. Only a viewer with a backlog
(its socket is slow) goes through its queue and its own sending task.

The domain events behind the pops (``call.ringing`` ... ``call.ended``) double the
frames and the desktop does not need them; a client asks for them (``?events=calls``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from cti.bus import EventBus, SubscriberLagged, SubscriptionClosed
from cti.events import CallIdentified, DomainEvent, LineStateChanged, describe
from cti.screenpop import PopBoard, PopCard
from cti.tasks import TaskMonitor
from cti.text import clean

log = logging.getLogger("cti.live")

LINES_INTERVAL = 0.2
PUBLIC_EVENTS = frozenset({"link.state"})
CALL_EVENTS = frozenset(
    {"call.ringing", "call.identified", "call.answered", "call.transferred", "call.ended"}
)
WRITE_BUFFER_LIMIT = 256 * 1024  # bytes unsent on a socket before frames queue instead


class Transport(Protocol):
    def write(self, data: bytes) -> None: ...

    def is_closing(self) -> bool: ...

    def get_write_buffer_size(self) -> int: ...


def websocket_frame(text: str) -> bytes:
    """A final, unmasked text frame (RFC 6455 5.2), as a server sends it."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 1 << 16:
        header = bytes((0x81, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + size.to_bytes(8, "big")
    return header + payload


def json_dumps(obj: Any) -> str:
    """JSON that always encodes: a string stored before the edge refused bad text goes
    out with U+FFFD in its place instead of stopping the feed."""
    return clean(json.dumps(obj, ensure_ascii=False, default=str))


# (call id, number, directory match) -> (history, open tasks) for a pop card
Enricher = Callable[
    [str, str | None, dict[str, Any] | None],
    Awaitable[tuple[list[dict[str, Any]], list[dict[str, Any]]]],
]


@dataclass(frozen=True, slots=True)
class FeedFrame:
    seq: int
    at: float  # monotonic time it was made, for the replay window
    audience: frozenset[str] | None  # the extensions it concerns; None: everyone
    text: str
    wire: bytes  # ``text`` as a WebSocket frame
    call_event: bool  # a domain event behind the pops: for viewers who asked


class Viewer:
    """One connection's place in the feed: what it may see and what waits to be sent."""

    def __init__(
        self, sees_all: bool, extension: str | None, limit: int, call_events: bool = False
    ) -> None:
        self.sees_all = sees_all
        self.extension = extension
        self.limit = limit
        self.call_events = call_events
        self.pending: collections.deque[FeedFrame] = collections.deque()
        self.wakeup = asyncio.Event()
        self.lagged = False
        self.pong_wanted = False
        self.seq = 0  # the last seq this viewer has been sent (or caught up to)
        # Set by the connection once its greeting is out: frames may then go straight
        # to the socket while nothing waits; ``sending`` while its task is mid-send.
        self.transport: Transport | None = None
        self.sending = False

    def sees(self, frame: FeedFrame) -> bool:
        if frame.call_event and not self.call_events:
            return False
        if frame.audience is None or self.sees_all:
            return True
        return self.extension is not None and self.extension in frame.audience

    def push(self, frame: FeedFrame) -> None:
        if self.lagged or (frame.call_event and not self.call_events):
            return  # a resync is coming (it carries this frame's effect), or not wanted
        transport = self.transport
        if (
            transport is not None
            and not self.pending
            and not self.sending
            and not transport.is_closing()
            and transport.get_write_buffer_size() < WRITE_BUFFER_LIMIT
        ):
            transport.write(frame.wire)
            self.seq = frame.seq
            return
        if len(self.pending) >= self.limit:
            self.pending.clear()
            self.lagged = True
        else:
            self.pending.append(frame)
        self.wakeup.set()


class LiveFeed:
    def __init__(
        self,
        bus: EventBus,
        *,
        lines: Callable[[], dict[str, str]],
        line_of: Callable[[str], str | None],
        links: Callable[[], list[dict[str, Any]]],
        enrich: Enricher | None = None,
        replay_seconds: float = 120.0,
        replay_frames: int = 20_000,
        send_buffer: int = 1000,
        clock: Callable[[], float] = time.monotonic,
        tasks: TaskMonitor | None = None,
    ) -> None:
        self.bus = bus
        self.tasks = tasks or TaskMonitor()
        self.lines = lines
        self.line_of = line_of
        self.links = links
        self.enrich = enrich
        self.replay_seconds = replay_seconds
        self.replay_frames = replay_frames
        self.send_buffer = send_buffer
        self.clock = clock
        self.stream = uuid.uuid4().hex[:16]  # a restarted service is a new stream
        self.head = 0
        self.board = PopBoard()
        self._journal: collections.deque[FeedFrame] = collections.deque()
        self._trimmed_through = 0  # frames up to this seq are gone from the journal
        self._everyone: set[Viewer] = set()  # viewers who see every frame
        self._by_extension: dict[str, set[Viewer]] = {}
        self._public_only: set[Viewer] = set()  # no extension: public frames only
        self._changed_lines: dict[str, str] = {}
        self._lines_flush: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._enrichments: set[asyncio.Task[None]] = set()

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        subscription = self.bus.subscribe(maxsize=100_000, name="live-feed")
        self._task = self.tasks.spawn(self._run(subscription), "live-feed")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._enrichments) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._lines_flush is not None:
            self._lines_flush.cancel()

    async def _run(self, subscription: Any) -> None:
        try:
            while True:
                try:
                    event = await subscription.get()
                except SubscriberLagged as lag:
                    log.warning("live feed fell behind the bus; every viewer resyncs: %s", lag)
                    for viewer in self._all_viewers():
                        viewer.pending.clear()
                        viewer.lagged = True
                        viewer.wakeup.set()
                    continue
                try:
                    self.handle(event)
                except Exception:
                    # One event that cannot be shown must not stop everyone's pops.
                    log.exception("live feed skipped an event", extra={"fields": describe(event)})
        except SubscriptionClosed:
            return
        finally:
            subscription.close()

    # -- events in -------------------------------------------------------------------

    def handle(self, event: DomainEvent) -> None:
        if isinstance(event, LineStateChanged):
            self._changed_lines[event.extension] = event.state.value
            if self._lines_flush is None:
                loop = asyncio.get_running_loop()
                self._lines_flush = loop.call_later(LINES_INTERVAL, self._flush_lines)
            return
        card = self.board.feed(event)
        if card is not None:
            self._publish_card(card)
            if isinstance(event, CallIdentified) and self.enrich is not None:
                self._start_enrichment(card)
        audience = None if event.type in PUBLIC_EVENTS else event.extensions()
        self.append(event.type, audience, event.to_dict())

    def _publish_card(self, card: PopCard) -> None:
        self.append("pop", frozenset(card.extensions), card.to_dict(self.line_of))

    def _flush_lines(self) -> None:
        self._lines_flush = None
        changed, self._changed_lines = self._changed_lines, {}
        if changed:
            try:
                self.append("lines", None, changed)
            except Exception:
                log.exception("live feed skipped a lines frame")

    def _start_enrichment(self, card: PopCard) -> None:
        async def enrich() -> None:
            assert self.enrich is not None
            try:
                history, tasks = await self.enrich(card.call_id, card.number, card.match)
            except Exception:
                log.exception("could not load the history for a screen pop")
                return
            changed = self.board.enrich(card.call_id, history, tasks)
            if changed is not None:
                self._publish_card(changed)

        task = asyncio.get_running_loop().create_task(enrich())
        self._enrichments.add(task)
        task.add_done_callback(self._enrichments.discard)

    # -- frames out ------------------------------------------------------------------

    def append(self, kind: str, audience: frozenset[str] | None, data: Any) -> FeedFrame:
        """Number a frame, keep it for replay and queue it for everyone who sees it."""
        self.head += 1
        text = json_dumps({"type": kind, "seq": self.head, "data": data})
        frame = FeedFrame(
            self.head, self.clock(), audience, text, websocket_frame(text), kind in CALL_EVENTS
        )
        self._journal.append(frame)
        self._trim()
        for viewer in self._everyone:
            viewer.push(frame)
        if audience is None:
            for viewers in self._by_extension.values():
                for viewer in viewers:
                    viewer.push(frame)
            for viewer in self._public_only:
                viewer.push(frame)
        else:
            for extension in audience:
                for viewer in self._by_extension.get(extension, ()):
                    viewer.push(frame)
        return frame

    def _trim(self) -> None:
        oldest = self.clock() - self.replay_seconds
        journal = self._journal
        while journal and (len(journal) > self.replay_frames or journal[0].at < oldest):
            self._trimmed_through = journal.popleft().seq

    # -- viewers ---------------------------------------------------------------------

    def attach(
        self,
        *,
        sees_all: bool,
        extension: str | None,
        stream: str | None = None,
        last_seq: int | None = None,
        call_events: bool = False,
    ) -> tuple[Viewer, bool]:
        """Register a viewer. Resumed (True): the frames after ``last_seq`` it may see are
        queued. Otherwise it starts at the head and should be sent ``resync_frame``."""
        viewer = Viewer(sees_all, extension, self.send_buffer, call_events)
        if sees_all:
            self._everyone.add(viewer)
        elif extension is not None:
            self._by_extension.setdefault(extension, set()).add(viewer)
        else:
            self._public_only.add(viewer)
        self._trim()
        resumable = (
            stream == self.stream
            and last_seq is not None
            and self._trimmed_through <= last_seq <= self.head
        )
        if resumable:
            assert last_seq is not None
            missed = [f for f in self._journal if f.seq > last_seq and viewer.sees(f)]
            if len(missed) <= viewer.limit:
                viewer.pending.extend(missed)
                viewer.seq = last_seq
                return viewer, True
        viewer.seq = self.head
        return viewer, False

    def detach(self, viewer: Viewer) -> None:
        self._everyone.discard(viewer)
        self._public_only.discard(viewer)
        if viewer.extension is not None:
            viewers = self._by_extension.get(viewer.extension)
            if viewers is not None:
                viewers.discard(viewer)
                if not viewers:
                    del self._by_extension[viewer.extension]

    def resync_frame(self, viewer: Viewer, reason: str) -> str:
        """The current state for ``viewer``, replacing whatever it was waiting to be sent."""
        viewer.pending.clear()
        viewer.lagged = False
        viewer.seq = self.head
        lines = self.lines()
        pops = [
            card.to_dict(lines.get)
            for card in self.board.cards.values()
            if viewer.sees_all or viewer.extension in card.extensions
        ]
        state = {"pops": pops, "lines": lines, "links": self.links()}
        return json_dumps({"type": "resync", "seq": self.head, "reason": reason, "state": state})

    def viewers(self) -> int:
        return len(self._all_viewers())

    def _all_viewers(self) -> list[Viewer]:
        found = [*self._everyone, *self._public_only]
        for viewers in self._by_extension.values():
            found.extend(viewers)
        return found
