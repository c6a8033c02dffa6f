"""The numbered stream of frames behind /ws, and who gets which: knows nothing of the bus
or of calls, only of frames, their audiences and viewers.

Every frame gets the next ``seq`` of the stream and is serialized once, whoever receives
it. A frame's audience is the extensions it concerns (None: everyone); a viewer gets the
frames its user may see. Recent frames stay in a journal for a while, so a viewer that
reconnects with the last ``seq`` it saw gets exactly what it missed; when that is no
longer possible it gets a ``resync`` with the current state instead (``state``: the
caller's, since only it knows what the state is).

Each viewer has a bounded queue: one that cannot keep up loses its queue and is sent a
resync when it can take frames again, while everyone else goes on. Fan-out goes through
an index by extension, so a frame costs in proportion to who sees it, not to how many
are connected.

Each frame is also encoded once as a WebSocket frame (``wire``, by the ``websockets``
library's encoder). A viewer with nothing waiting takes it straight onto its
connection's transport: no task wakes up per viewer, which is what keeps a pop to its
viewers short (sending every frame with aiohttp's ``send_str`` from each viewer's task
instead took 2.5-4x as long at p99: bench/screenpop.py compares the two). What cannot
go at once waits in the viewer's queue for the feed's one ``Sender``, which writes each
viewer's waiting frames in one write, a slice of viewers per turn of the loop:

- a frame for many viewers (``lines``, every 200 ms, to all of them) is queued for all
  and written in slices, so that a pop for a few is not held up behind a thousand
  writes, and keeps its place before later frames on every connection;
- a slow socket (more than WRITE_BUFFER_LIMIT unsent) is tried again every RETRY_SECONDS
  until it takes its frames, or its queue overflows and it gets a resync instead;
- a connection that was sent nothing for its heartbeat gets a ``heartbeat`` frame, from
  one sweep over all viewers (no timer per connection).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from websockets.frames import Frame, Opcode

from cti.text import clean

WRITE_BUFFER_LIMIT = 256 * 1024  # bytes unsent on a socket before frames queue instead
SEND_SLICE = 64  # viewers the sender writes to in one turn of the loop
RETRY_SECONDS = 0.05  # a slow socket is tried again this often
BEAT_SWEEPS = 4  # heartbeat sweeps per heartbeat interval

log = logging.getLogger("cti.feed")


class Transport(Protocol):
    def write(self, data: bytes) -> None: ...

    def is_closing(self) -> bool: ...

    def get_write_buffer_size(self) -> int: ...


def websocket_frame(text: str) -> bytes:
    """A final, unmasked text frame (RFC 6455 5.2), as a server sends it: written once,
    then copied to every idle viewer's socket as it is."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


def json_dumps(obj: Any) -> str:
    """JSON that always encodes: a string stored before the edge refused bad text goes
    out with U+FFFD in its place instead of stopping the feed."""
    return clean(json.dumps(obj, ensure_ascii=False, default=str))


class FeedFrame:
    """A numbered frame. Its text (and ``wire``, the text as a WebSocket frame) is made
    once, when first needed: the domain events behind the pops are numbered and kept for
    every viewer but sent only to those who asked for them, often nobody."""

    __slots__ = ("_text", "_wire", "at", "audience", "call_event", "data", "kind", "seq")

    def __init__(
        self,
        seq: int,
        at: float,  # monotonic time it was made, for the replay window
        audience: frozenset[str] | None,  # the extensions it concerns; None: everyone
        kind: str,
        data: Any,
        call_event: bool = False,  # a domain event behind the pops: for viewers who asked
    ) -> None:
        self.seq, self.at, self.audience = seq, at, audience
        self.kind, self.data, self.call_event = kind, data, call_event
        self._text: str | None = None
        self._wire: bytes | None = None

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = json_dumps({"type": self.kind, "seq": self.seq, "data": self.data})
            self.data = None  # kept as text from now on
        return self._text

    @property
    def wire(self) -> bytes:
        if self._wire is None:
            self._wire = websocket_frame(self.text)
        return self._wire


class Viewer:
    """One connection's place in the feed: what it may see and what waits to be sent."""

    __slots__ = (
        "beat_seq",
        "call_events",
        "extension",
        "heartbeat",
        "lagged",
        "limit",
        "pending",
        "pong_wanted",
        "quiet_since",
        "sees_all",
        "sender",
        "seq",
        "transport",
    )

    def __init__(
        self,
        sees_all: bool,
        extension: str | None,
        limit: int,
        call_events: bool = False,
        sender: Sender | None = None,
    ) -> None:
        self.sees_all = sees_all
        self.extension = extension
        self.limit = limit
        self.call_events = call_events
        self.pending: list[FeedFrame] = []  # a list: a deque costs 600 bytes empty
        self.lagged = False
        self.pong_wanted = False
        self.seq = 0  # the last seq this viewer has been sent (or caught up to)
        # Set by the connection once its greeting is out: frames may then go straight
        # to the socket while nothing waits.
        self.transport: Transport | None = None
        self.sender = sender
        self.heartbeat = 0.0  # seconds of silence before a heartbeat frame (0: none)
        self.beat_seq = 0  # seq at the last sweep, and since when it has not moved
        self.quiet_since = 0.0

    def sees(self, frame: FeedFrame) -> bool:
        if frame.call_event and not self.call_events:
            return False
        if frame.audience is None or self.sees_all:
            return True
        return self.extension is not None and self.extension in frame.audience

    def push(self, frame: FeedFrame) -> None:
        """Send a frame now if the socket takes it, else queue it behind what waits."""
        if self.lagged or (frame.call_event and not self.call_events):
            return  # a resync is coming (it carries this frame's effect), or not wanted
        transport = self.transport
        if transport is not None and not self.pending and _writable(transport):
            transport.write(frame.wire)
            self.seq = frame.seq
            return
        self.queue(frame)

    def queue(self, frame: FeedFrame) -> None:
        """Queue a frame for the sender (a slice at a time; see the module's text)."""
        if self.lagged or (frame.call_event and not self.call_events):
            return
        if len(self.pending) >= self.limit:
            self.lag()
        else:
            self.pending.append(frame)
            if self.sender is not None:
                self.sender.wake(self)

    def lag(self) -> None:
        """Drop what waits: the sender sends a resync instead when it can."""
        self.pending.clear()
        self.lagged = True
        if self.sender is not None:
            self.sender.wake(self)


def _writable(transport: Transport) -> bool:
    return not transport.is_closing() and transport.get_write_buffer_size() < WRITE_BUFFER_LIMIT


class Sender:
    """Writes what waits in viewers' queues, a slice of viewers per turn of the loop;
    sends resyncs to viewers that fell behind and heartbeats to quiet ones. ``resync``
    is the feed's: a viewer's current state as a frame's text."""

    def __init__(self, resync: Callable[[Viewer, str], str], clock: Callable[[], float]) -> None:
        self.resync = resync
        self.clock = clock
        self._waiting: dict[Viewer, None] = {}  # in the order they started waiting
        self._slow: set[Viewer] = set()  # their sockets had no room: tried again later
        self._turn: asyncio.Handle | None = None
        self._retry: asyncio.TimerHandle | None = None

    def wake(self, viewer: Viewer) -> None:
        if viewer.transport is None or viewer in self._slow:
            return  # not connected yet (its greeting goes first), or waiting for room
        self._waiting[viewer] = None
        if self._turn is None:
            self._turn = asyncio.get_running_loop().call_soon(self._send)

    def forget(self, viewer: Viewer) -> None:
        self._waiting.pop(viewer, None)
        self._slow.discard(viewer)

    def _send(self) -> None:
        self._turn = None
        for _ in range(min(SEND_SLICE, len(self._waiting))):
            viewer = next(iter(self._waiting))
            del self._waiting[viewer]
            try:
                self._send_to(viewer)
            except Exception:  # one broken connection must not stop the others'
                log.exception("could not send to a live connection")
        if self._waiting:
            self._turn = asyncio.get_running_loop().call_soon(self._send)

    def _send_to(self, viewer: Viewer) -> None:
        transport = viewer.transport
        if transport is None or transport.is_closing():
            return  # its connection ends: detach() forgets it
        if transport.get_write_buffer_size() >= WRITE_BUFFER_LIMIT:
            self._slow.add(viewer)
            if self._retry is None:
                loop = asyncio.get_running_loop()
                self._retry = loop.call_later(RETRY_SECONDS, self._try_slow_again)
            return
        chunks = []
        if viewer.lagged:
            chunks.append(websocket_frame(self.resync(viewer, "lagged")))
        elif viewer.pending:
            frames, viewer.pending = viewer.pending, []
            chunks += [frame.wire for frame in frames]
            viewer.seq = frames[-1].seq
        if viewer.pong_wanted:
            viewer.pong_wanted = False
            chunks.append(websocket_frame(json_dumps({"type": "pong", "seq": viewer.seq})))
        if chunks:
            transport.write(b"".join(chunks))  # one write however many frames waited

    def _try_slow_again(self) -> None:
        self._retry = None
        slow, self._slow = self._slow, set()
        for viewer in slow:
            self.wake(viewer)

    def sweep(self, viewers: list[Viewer]) -> None:
        """A heartbeat frame to each viewer that was sent nothing for its heartbeat."""
        now = self.clock()
        for viewer in viewers:
            if viewer.seq != viewer.beat_seq or viewer.pending or viewer.lagged:
                viewer.beat_seq, viewer.quiet_since = viewer.seq, now
            elif viewer.heartbeat and now - viewer.quiet_since >= viewer.heartbeat:
                viewer.quiet_since = now
                transport = viewer.transport
                if transport is not None and _writable(transport):
                    text = json_dumps({"type": "heartbeat", "seq": viewer.seq})
                    transport.write(websocket_frame(text))

    def stop(self) -> None:
        for handle in (self._turn, self._retry):
            if handle is not None:
                handle.cancel()
        self._turn = self._retry = None


class Feed:
    """The stream: ``append`` numbers, keeps and fans out a frame; ``attach`` resumes or
    starts a viewer; ``resync_frame`` is ``state(viewer)`` at the current seq."""

    def __init__(
        self,
        *,
        state: Callable[[Viewer], dict[str, Any]],
        replay_seconds: float = 120.0,
        replay_frames: int = 20_000,
        send_buffer: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = state
        self.replay_seconds = replay_seconds
        self.replay_frames = replay_frames
        self.send_buffer = send_buffer
        self.clock = clock
        self.stream = uuid.uuid4().hex[:16]  # a restarted service is a new stream
        self.head = 0
        self._journal: collections.deque[FeedFrame] = collections.deque()
        self._trimmed_through = 0  # frames up to this seq are gone from the journal
        self._everyone: set[Viewer] = set()  # viewers who see every frame
        self._by_extension: dict[str, list[Viewer]] = {}  # lists: mostly one each
        self._public_only: set[Viewer] = set()  # no extension: public frames only
        self._count = 0
        self.sender = Sender(self.resync_frame, clock)
        self._sweep: asyncio.TimerHandle | None = None

    # -- frames in -------------------------------------------------------------------

    def append(
        self, kind: str, audience: frozenset[str] | None, data: Any, *, call_event: bool = False
    ) -> FeedFrame:
        """Number a frame, keep it for replay and send or queue it for everyone who sees
        it: a frame for a few goes straight out, one for many is queued for the sender."""
        return self.deliver(self.head + 1, kind, audience, data, call_event=call_event)

    def deliver(
        self,
        seq: int,
        kind: str,
        audience: frozenset[str] | None,
        data: Any,
        *,
        call_event: bool = False,
    ) -> FeedFrame:
        """``append`` with the frame's number given (a stream several nodes share)."""
        self.head = seq
        frame = FeedFrame(seq, self.clock(), audience, kind, data, call_event)
        self._journal.append(frame)
        self._trim()
        if audience is None:
            send = Viewer.queue if self._count > SEND_SLICE else Viewer.push
            for viewer in self._everyone:
                send(viewer, frame)
            for viewers in self._by_extension.values():
                for viewer in viewers:
                    send(viewer, frame)
            for viewer in self._public_only:
                send(viewer, frame)
        else:
            for viewer in self._everyone:
                viewer.push(frame)
            for extension in audience:
                for viewer in self._by_extension.get(extension, ()):
                    viewer.push(frame)
        return frame

    def lag_everyone(self) -> None:
        """Frames were lost before they reached the stream: every viewer resyncs."""
        for viewer in self._all_viewers():
            viewer.lag()

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
        viewer = Viewer(sees_all, extension, self.send_buffer, call_events, self.sender)
        self._count += 1
        if sees_all:
            self._everyone.add(viewer)
        elif extension is not None:
            self._by_extension.setdefault(extension, []).append(viewer)
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

    def start_sending(self, viewer: Viewer, transport: Transport, heartbeat: float) -> None:
        """The viewer's greeting is out: from now on its frames go to ``transport``, and
        a heartbeat frame after ``heartbeat`` seconds with nothing sent."""
        viewer.transport, viewer.heartbeat = transport, heartbeat
        viewer.beat_seq, viewer.quiet_since = viewer.seq, self.clock()
        self.sender.wake(viewer)  # what it was queued while being greeted (a resume)
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_soon(self._heartbeats)

    def pong(self, viewer: Viewer) -> None:
        viewer.pong_wanted = True
        self.sender.wake(viewer)

    def _heartbeats(self) -> None:
        viewers = self._all_viewers()
        if not viewers:
            self._sweep = None  # the next connection starts it again
            return
        self.sender.sweep(viewers)
        beats = [v.heartbeat for v in viewers if v.heartbeat] or [1.0]
        self._sweep = asyncio.get_running_loop().call_later(
            min(beats) / BEAT_SWEEPS, self._heartbeats
        )

    def stop(self) -> None:
        """No more heartbeats or queued sends (the service stops)."""
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        self.sender.stop()

    def detach(self, viewer: Viewer) -> None:
        if viewer.sender is not None:
            viewer.sender.forget(viewer)
            viewer.sender = None
            self._count -= 1
        self._everyone.discard(viewer)
        self._public_only.discard(viewer)
        if viewer.extension is not None:
            viewers = self._by_extension.get(viewer.extension)
            if viewers is not None and viewer in viewers:
                viewers.remove(viewer)
                if not viewers:
                    del self._by_extension[viewer.extension]

    def resync_frame(self, viewer: Viewer, reason: str) -> str:
        """The current state for ``viewer``, replacing whatever it was waiting to be sent."""
        viewer.pending.clear()
        viewer.lagged = False
        viewer.seq = self.head
        state = self.state(viewer)
        return json_dumps({"type": "resync", "seq": self.head, "reason": reason, "state": state})

    def viewers(self) -> int:
        return self._count

    def _all_viewers(self) -> list[Viewer]:
        found = [*self._everyone, *self._public_only]
        for viewers in self._by_extension.values():
            found.extend(viewers)
        return found
