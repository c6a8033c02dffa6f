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
connection's transport: no task wakes up per viewer, which is what keeps a burst to a
thousand viewers short: sending every frame with aiohttp's ``send_str`` from each
viewer's task instead took 2.5-4x as long at p99 (bench/screenpop.py compares the two).
Only a viewer with a backlog (its socket is slow) goes through its queue and its own
sending task (cti.http.ws).
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from websockets.frames import Frame, Opcode

from cti.text import clean

WRITE_BUFFER_LIMIT = 256 * 1024  # bytes unsent on a socket before frames queue instead


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
            self.lag()
        else:
            self.pending.append(frame)
            self.wakeup.set()

    def lag(self) -> None:
        """Drop what waits: the connection sends a resync instead when it can."""
        self.pending.clear()
        self.lagged = True
        self.wakeup.set()


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
        self._by_extension: dict[str, set[Viewer]] = {}
        self._public_only: set[Viewer] = set()  # no extension: public frames only

    # -- frames in -------------------------------------------------------------------

    def append(
        self, kind: str, audience: frozenset[str] | None, data: Any, *, call_event: bool = False
    ) -> FeedFrame:
        """Number a frame, keep it for replay and queue it for everyone who sees it."""
        self.head += 1
        text = json_dumps({"type": kind, "seq": self.head, "data": data})
        frame = FeedFrame(
            self.head, self.clock(), audience, text, websocket_frame(text), call_event
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
        state = self.state(viewer)
        return json_dumps({"type": "resync", "seq": self.head, "reason": reason, "state": state})

    def viewers(self) -> int:
        return len(self._all_viewers())

    def _all_viewers(self) -> list[Viewer]:
        found = [*self._everyone, *self._public_only]
        for viewers in self._by_extension.values():
            found.extend(viewers)
        return found
