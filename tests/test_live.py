"""The live feed without sockets: numbering, audiences, replay window, slow viewers."""

import asyncio
import json

from cti import cards
from cti.bus import InProcessBus
from cti.domain import Direction, LineState
from cti.events import CallRinging, LineStateChanged
from cti.feed import WRITE_BUFFER_LIMIT, Feed, Viewer, websocket_frame
from cti.live import LiveFeed


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def feed(**options) -> LiveFeed:
    return LiveFeed(InProcessBus(), lines=dict, line_of=lambda _: None, links=list, **options)


def ringing(call_id: str, extension: str) -> CallRinging:
    return CallRinging(
        call_id=call_id, extension=extension, direction=Direction.INBOUND, external_number=None
    )


def drain(viewer: Viewer) -> list[tuple[str, int]]:
    found = []
    while viewer.pending:
        frame = viewer.pending.popleft()
        found.append((frame.text.split('"type": "')[1].split('"')[0], frame.seq))
    return found


async def test_each_viewer_gets_what_its_user_may_see_serialized_once() -> None:
    f = feed()
    anna, _ = f.attach(sees_all=False, extension="101", call_events=True)
    boss, _ = f.attach(sees_all=True, extension=None, call_events=True)
    nobody, _ = f.attach(sees_all=False, extension=None)
    f.handle(ringing("c1", "102"))
    f.handle(ringing("c2", "101"))
    assert drain(boss) == [("pop", 1), ("call.ringing", 2), ("pop", 3), ("call.ringing", 4)]
    assert drain(anna) == [("pop", 3), ("call.ringing", 4)]
    assert drain(nobody) == []
    assert f.head == 4


async def test_a_viewer_that_never_drains_lags_while_others_go_on() -> None:
    f = feed(send_buffer=5)
    stuck, _ = f.attach(sees_all=True, extension=None, call_events=True)
    reader, _ = f.attach(sees_all=True, extension=None, call_events=True)
    received = 0
    for n in range(100):
        f.handle(ringing(f"c{n}", "101"))
        received += len(drain(reader))
    assert received == 200
    assert stuck.lagged and not stuck.pending  # its backlog is gone: a resync replaces it
    resync = f.resync_frame(stuck, "lagged")
    assert '"reason": "lagged"' in resync and resync.count('"call_id"') == 100
    assert not stuck.lagged and stuck.seq == f.head


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.buffered = 0

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return self.buffered


async def test_idle_viewers_get_frames_straight_on_their_socket_in_order() -> None:
    f = feed()
    viewer, _ = f.attach(sees_all=True, extension=None, call_events=True)
    viewer.transport = transport = FakeTransport()
    f.handle(ringing("c1", "101"))
    assert not viewer.pending and viewer.seq == 2
    assert transport.written[0] == websocket_frame(f._journal[0].text)
    viewer.sending = True  # its task is mid-send: what comes now must wait behind
    f.handle(ringing("c2", "101"))
    viewer.sending = False
    f.handle(ringing("c3", "101"))  # still behind the queue, never ahead of it
    assert [frame.seq for frame in viewer.pending] == [3, 4, 5, 6]
    assert len(transport.written) == 2
    viewer.pending.clear()
    transport.buffered = WRITE_BUFFER_LIMIT  # a slow socket: queue instead
    f.handle(ringing("c4", "101"))
    assert len(viewer.pending) == 2 and len(transport.written) == 2


def test_websocket_frame_lengths() -> None:
    assert websocket_frame("hi") == b"\x81\x02hi"
    assert websocket_frame("x" * 200)[:4] == b"\x81\x7e\x00\xc8"
    assert websocket_frame("x" * 70_000)[:10] == b"\x81\x7f" + (70_000).to_bytes(8, "big")


async def test_resume_within_the_window_and_not_beyond() -> None:
    clock = Clock()
    f = feed(replay_seconds=60, replay_frames=100, clock=clock)
    f.handle(ringing("c1", "101"))  # seq 1, 2
    f.handle(ringing("c2", "101"))  # seq 3, 4
    viewer, resumed = f.attach(
        sees_all=False, extension="101", stream=f.stream, last_seq=2, call_events=True
    )
    assert resumed and viewer.seq == 2 and drain(viewer) == [("pop", 3), ("call.ringing", 4)]
    _, resumed = f.attach(
        sees_all=False, extension="101", stream="other", last_seq=2, call_events=True
    )
    assert not resumed
    _, resumed = f.attach(
        sees_all=False, extension="101", stream=f.stream, last_seq=9, call_events=True
    )
    assert not resumed  # a seq the stream never reached
    clock.now = 61  # frames older than the window are gone
    f.handle(ringing("c3", "101"))
    _, resumed = f.attach(
        sees_all=False, extension="101", stream=f.stream, last_seq=2, call_events=True
    )
    assert not resumed
    viewer, resumed = f.attach(
        sees_all=False, extension="101", stream=f.stream, last_seq=4, call_events=True
    )
    assert resumed and drain(viewer) == [("pop", 5), ("call.ringing", 6)]


async def test_line_states_are_coalesced_and_go_to_everyone(monkeypatch) -> None:
    monkeypatch.setattr(cards, "LINES_INTERVAL", 0.01)
    f = feed()
    anna, _ = f.attach(sees_all=False, extension="101", call_events=True)
    for state in (LineState.RINGING, LineState.IN_USE):
        f.handle(LineStateChanged(extension="102", state=state))
    f.handle(LineStateChanged(extension="103", state=LineState.RINGING))
    assert not anna.pending
    await asyncio.sleep(0.05)
    (frame,) = anna.pending
    assert '"data": {"102": "in_use", "103": "ringing"}' in frame.text


async def test_detached_viewers_get_nothing_more() -> None:
    f = feed()
    anna, _ = f.attach(sees_all=False, extension="101", call_events=True)
    f.detach(anna)
    f.handle(ringing("c1", "101"))
    assert not anna.pending and f.viewers() == 0


def test_the_feed_alone_knows_frames_and_viewers_the_state_is_the_callers() -> None:
    f = Feed(state=lambda viewer: {"extension": viewer.extension})
    anna, _ = f.attach(sees_all=False, extension="101")
    f.append("note", frozenset({"101"}), {"n": 1})
    f.append("note", frozenset({"102"}), {"n": 2})
    f.append("note", frozenset({"101"}), {"n": 3}, call_event=True)  # anna did not ask
    assert drain(anna) == [("note", 1)]
    f.append("note", None, {"n": 4})
    f.lag_everyone()  # frames were lost upstream: what waits is dropped, a resync comes
    assert anna.lagged and not anna.pending
    resync = json.loads(f.resync_frame(anna, "lagged"))
    assert resync == {"type": "resync", "seq": 4, "reason": "lagged", "state": {"extension": "101"}}
    assert not anna.lagged and anna.seq == 4


class _Lines:
    """A PBX adapter as far as line states go."""

    def __init__(self, **states: LineState) -> None:
        self.states = {ext.removeprefix("x"): state for ext, state in states.items()}

    def lines(self) -> dict[str, LineState]:
        return self.states


def test_a_phone_on_two_pbxs_shows_the_busier_line() -> None:
    from cti.service import line_state_of, line_states

    asterisk = _Lines(x101=LineState.IN_USE, x102=LineState.UNAVAILABLE)
    freeswitch = _Lines(x101=LineState.IDLE, x102=LineState.IDLE, x103=LineState.RINGING)
    for adapters in ({"a": asterisk, "f": freeswitch}, {"f": freeswitch, "a": asterisk}):
        assert line_states(adapters) == {"101": "in_use", "102": "idle", "103": "ringing"}
        assert line_state_of(adapters, "101") == "in_use"
        assert line_state_of(adapters, "104") is None


async def test_a_line_event_from_one_pbx_does_not_hide_the_others_state(monkeypatch) -> None:
    monkeypatch.setattr(cards, "LINES_INTERVAL", 0.01)
    merged = {"101": "in_use"}  # one PBX has 101 talking; the other says it is idle
    f = LiveFeed(InProcessBus(), lines=dict, line_of=merged.get, links=list)
    anna, _ = f.attach(sees_all=True, extension=None, call_events=True)
    f.handle(LineStateChanged(extension="101", state=LineState.IDLE))
    await asyncio.sleep(0.05)
    (frame,) = anna.pending
    assert '"data": {"101": "in_use"}' in frame.text
