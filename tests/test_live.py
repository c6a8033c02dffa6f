"""The live feed without sockets: numbering, audiences, replay window, slow viewers."""

import asyncio
import json

from cti import cards
from cti import feed as feed_module
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
        frame = viewer.pending.pop(0)
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
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def frames(self) -> list[dict]:
        """What was written, as the client reads it (a write may hold several frames)."""
        data, found = b"".join(self.written), []
        while data:
            assert data[0] == 0x81  # a final text frame, unmasked
            length, at = data[1], 2
            if length == 126:
                length, at = int.from_bytes(data[2:4], "big"), 4
            found.append(json.loads(data[at : at + length]))
            data = data[at + length :]
        return found


async def turns(n: int = 5) -> None:
    """Let the feed's sender have a few turns of the loop."""
    for _ in range(n):
        await asyncio.sleep(0)


async def test_idle_viewers_get_frames_straight_on_their_socket_in_order() -> None:
    f = feed()
    viewer, _ = f.attach(sees_all=True, extension=None, call_events=True)
    transport = FakeTransport()
    f.start_sending(viewer, transport, heartbeat=0)
    f.handle(ringing("c1", "101"))
    assert not viewer.pending and viewer.seq == 2
    assert transport.written[0] == websocket_frame(f._journal[0].text)
    transport.buffered = WRITE_BUFFER_LIMIT  # a slow socket: queue instead
    f.handle(ringing("c2", "101"))
    transport.buffered = 0
    f.handle(ringing("c3", "101"))  # behind the queue, never ahead of it
    assert [frame.seq for frame in viewer.pending] == [3, 4, 5, 6]
    assert len(transport.written) == 2
    await asyncio.sleep(0.1)  # the sender tries the slow socket again: room now
    assert not viewer.pending and len(transport.written) == 3  # the four in one write
    assert [frame["seq"] for frame in transport.frames()] == [1, 2, 3, 4, 5, 6]


async def test_a_frame_for_everyone_goes_out_in_slices_and_keeps_its_place() -> None:
    f = feed()
    viewers = []
    for n in range(3 * feed_module.SEND_SLICE):
        viewer, _ = f.attach(sees_all=False, extension=str(1000 + n), call_events=True)
        f.start_sending(viewer, FakeTransport(), heartbeat=0)
        viewers.append(viewer)
    f.append("lines", None, {"1000": "ringing"})
    # Queued for all, not written in one go: the loop would stall for a thousand writes.
    assert all(len(v.pending) == 1 for v in viewers)
    last = viewers[-1]
    f.handle(ringing("c1", last.extension))  # after the lines frame, on its connection too
    await asyncio.sleep(0)
    written = sum(1 for v in viewers if v.transport.written)
    assert feed_module.SEND_SLICE <= written < len(viewers)
    await turns()
    assert [frame["type"] for frame in last.transport.frames()] == ["lines", "pop", "call.ringing"]
    assert all(v.transport.frames()[0]["type"] == "lines" and not v.pending for v in viewers)


async def test_a_viewer_that_fell_behind_is_sent_a_resync_when_its_socket_has_room() -> None:
    f = feed(send_buffer=3)
    viewer, _ = f.attach(sees_all=True, extension=None, call_events=True)
    transport = FakeTransport()
    transport.buffered = WRITE_BUFFER_LIMIT
    f.start_sending(viewer, transport, heartbeat=0)
    for n in range(5):
        f.handle(ringing(f"c{n}", "101"))
    assert viewer.lagged and not viewer.pending
    await asyncio.sleep(0.1)
    assert transport.written == []  # still no room
    transport.buffered = 0
    await asyncio.sleep(0.1)
    (resync,) = transport.frames()
    assert resync["type"] == "resync" and resync["reason"] == "lagged"
    assert len(resync["state"]["pops"]) == 5 and not viewer.lagged


async def test_quiet_viewers_get_heartbeats_and_busy_ones_do_not() -> None:
    f = feed()
    quiet, _ = f.attach(sees_all=False, extension="101", call_events=True)
    busy, _ = f.attach(sees_all=False, extension="102", call_events=True)
    for viewer in (quiet, busy):
        f.start_sending(viewer, FakeTransport(), heartbeat=0.2)
    for n in range(6):
        f.handle(ringing(f"c{n}", "102"))
        await asyncio.sleep(0.05)
    assert [frame["type"] for frame in quiet.transport.frames()] == ["heartbeat"]
    assert {frame["type"] for frame in busy.transport.frames()} == {"pop", "call.ringing"}
    f.pong(quiet)
    await turns()
    assert quiet.transport.frames()[-1] == {"type": "pong", "seq": 0}
    await f.stop()


async def test_call_events_nobody_asked_for_are_never_encoded() -> None:
    f = feed()
    anna, _ = f.attach(sees_all=False, extension="101")  # pops only
    f.start_sending(anna, FakeTransport(), heartbeat=0)
    f.handle(ringing("c1", "101"))
    pop, event = f._journal
    assert pop._text is not None and event.call_event and event._text is None
    assert json.loads(event.text)["type"] == "call.ringing"  # made when a resume needs it


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


async def test_lines_go_out_less_often_the_more_viewers_they_go_to(monkeypatch) -> None:
    monkeypatch.setattr(cards, "LINES_INTERVAL", 0.01)
    monkeypatch.setattr(cards, "LINE_SENDS_PER_SECOND", 20)  # 6 viewers: every 0.3 s
    f = feed()
    viewers = [f.attach(sees_all=True, extension=None)[0] for _ in range(6)]
    f.handle(LineStateChanged(extension="101", state=LineState.RINGING))
    await asyncio.sleep(0.1)
    assert not viewers[0].pending  # 10 ms with one viewer; not yet with six
    await asyncio.sleep(0.35)
    assert [len(v.pending) for v in viewers] == [1] * 6


def shared_feed() -> tuple[LiveFeed, list[tuple]]:
    """A node's feed of several: what its cards make goes to ``shared`` (the stream)."""
    shared: list[tuple] = []
    f = LiveFeed(
        InProcessBus(),
        lines=dict,
        line_of=lambda _: None,
        links=list,
        share=lambda *frame: shared.append(frame),
    )
    return f, shared


async def test_a_node_of_several_shares_its_frames_and_shows_the_streams() -> None:
    f, shared = shared_feed()
    viewer, _ = f.attach(sees_all=True, extension=None, call_events=True)
    f.handle(ringing("lab:c1", "101"))
    assert not viewer.pending  # not shown here: shared, and shown when the stream brings it
    (kind, audience, card, call_event), _event = shared
    assert kind == "pop" and audience == frozenset({"101"}) and not call_event
    # The stream's frames, this node's and another's, numbered by the stream.
    f.take(7, kind, audience, card, call_event)
    f.take(9, "lines", None, {"101": "ringing"}, False)
    f.take(9, "lines", None, {"101": "ringing"}, False)  # a consumer started over: once
    assert [frame.seq for frame in viewer.pending] == [7, 9] and f.head == 9
    state = json.loads(f.resync_frame(viewer, "connect"))["state"]
    assert [p["call_id"] for p in state["pops"]] == ["lab:c1"]
    assert state["lines"] == {"101": "ringing"}
    # A client that was on another node resumes here from the stream's seq.
    resumed, ok = f.attach(sees_all=True, extension=None, stream=f.stream, last_seq=7)
    assert ok and [frame.seq for frame in resumed.pending] == [9]


async def test_a_resume_from_a_node_that_was_ahead_waits_for_this_one_to_catch_up() -> None:
    f, _ = shared_feed()
    f.take(1, "lines", None, {"101": "idle"}, False)
    waiting = asyncio.create_task(f.ready_for(f.stream, 3))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    f.take(3, "lines", None, {"101": "ringing"}, False)
    await asyncio.wait_for(waiting, 1)
    _, resumed = f.attach(sees_all=True, extension=None, stream=f.stream, last_seq=3)
    assert resumed


async def test_a_new_leader_takes_the_cards_of_its_pbx_over_and_pops_nothing_twice() -> None:
    old, shared = shared_feed()
    old.handle(ringing("lab:c1", "101"))
    new, mine = shared_feed()
    for seq, (kind, audience, data, call_event) in enumerate(shared, 1):
        new.take(seq, kind, audience, data, call_event)
    assert new.adopt("lab") == 1 and new.adopt("other") == 0
    new.handle(ringing("lab:c1", "101"))  # the PBX's state, loaded again at the takeover
    assert [frame for frame in mine if frame[0] == "pop"] == []  # known: no second pop
    new.forget("lab")
    assert new.board.cards == {}
