"""/ws: authenticated, filtered by what the user may see, resumable, never blocking others."""

import asyncio
import socket
from datetime import UTC, datetime

import aiohttp
import pytest
from helpers import bearer

from cti import auth, feed
from cti.clients.builtin import ClientIn, PhoneIn, save_client
from cti.clients.models import Activity, CallbackTask
from cti.domain import Direction, LineState, Outcome
from cti.events import (
    CallAnswered,
    CallEnded,
    CallIdentified,
    CallRinging,
    LineStateChanged,
    LinkStateChanged,
)
from cti.http import ws as ws_module

CALLER = "+995322123456"


def ringing(call_id: str, extension: str) -> CallRinging:
    return CallRinging(
        call_id=call_id,
        extension=extension,
        direction=Direction.INBOUND,
        external_number=CALLER,
        external_name="თბილისი ლტდ",
    )


async def receive(ws) -> dict:
    return await asyncio.wait_for(ws.receive_json(), 2.0)


async def connect(client, token: str, **resume):
    """A connection past its greeting, asking for the call events too: (ws, hello, resync
    or None)."""
    params = {"events": "calls", **{k: str(v) for k, v in resume.items()}}
    ws = await client.ws_connect("/ws", headers=bearer(token), params=params)
    hello = await receive(ws)
    assert hello["type"] == "hello"
    resync = None if hello["resumed"] else await receive(ws)
    return ws, hello, resync


async def frames_until(ws, done) -> list[dict]:
    found = []
    while True:
        frame = await receive(ws)
        found.append(frame)
        if done(frame):
            return found


def first_sight(frames: list[dict]) -> list[dict]:
    """Each call's first pop, without the directory's answers that may follow it (the
    caller identifier runs alongside; on SQLite the first pop has the answer already)."""
    popped: set[str] = set()
    found = []
    for f in frames:
        if f["type"] == "call.identified":
            continue
        if f["type"] == "pop":
            if f["data"]["call_id"] in popped:
                continue
            popped.add(f["data"]["call_id"])
        found.append(f)
    return found


async def test_header_auth_hello_and_current_state(client, make_user) -> None:
    token = await make_user("operator", "101", username="anna")
    ws, hello, resync = await connect(client, token)
    async with ws:
        assert hello["user"]["extension"] == "101" and hello["resumed"] is False
        assert hello["stream"] and hello["heartbeat"] > 0
        assert hello["features"] == {"dial": False, "transfer": False, "sms": False}
        assert resync["type"] == "resync" and resync["reason"] == "connect"
        assert resync["seq"] == hello["seq"]
        assert resync["state"] == {"pops": [], "lines": {}, "links": []}


async def test_call_events_only_for_clients_that_ask(client, service, make_user) -> None:
    token = await make_user("receptionist")
    async with client.ws_connect("/ws", headers=bearer(token)) as ws:
        assert (await receive(ws))["type"] == "hello"
        assert (await receive(ws))["type"] == "resync"
        await service.bus.publish(ringing("c1", "101"))
        await service.bus.publish(LinkStateChanged(name="marker", kind="pbx", up=True))
        frames = await frames_until(ws, lambda f: f["type"] == "link.state")
        assert {f["type"] for f in frames} == {"pop", "link.state"}


async def test_first_frame_auth_for_browsers(client, make_user) -> None:
    token = await make_user("receptionist", "100")
    async with client.ws_connect("/ws") as ws:
        await ws.send_json({"type": "auth", "token": token})
        hello = await receive(ws)
        assert hello["type"] == "hello"
        assert (await receive(ws))["type"] == "resync"
        await ws.send_json({"type": "ping"})
        pong = await receive(ws)
        assert pong == {"type": "pong", "seq": hello["seq"]}


async def test_bad_header_token_is_refused_before_upgrade(client) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/ws", headers=bearer("cti_" + "0" * 43))
    assert refused.value.status == 401


@pytest.mark.parametrize("first", [{"type": "auth", "token": "cti_wrong"}, {"type": "hi"}, "junk"])
async def test_bad_first_frame_closes_with_4401(client, first) -> None:
    async with client.ws_connect("/ws") as ws:
        if isinstance(first, str):
            await ws.send_str(first)
        else:
            await ws.send_json(first)
        msg = await asyncio.wait_for(ws.receive(), 2)
        assert msg.type == aiohttp.WSMsgType.CLOSE
        assert ws.close_code == ws_module.CLOSE_UNAUTHORIZED


async def test_silent_client_is_closed_after_auth_timeout(client, monkeypatch) -> None:
    monkeypatch.setattr(ws_module, "AUTH_TIMEOUT", 0.2)
    async with client.ws_connect("/ws") as ws:
        msg = await asyncio.wait_for(ws.receive(), 2)
        assert msg.type == aiohttp.WSMsgType.CLOSE
        assert ws.close_code == ws_module.CLOSE_UNAUTHORIZED


async def test_operators_see_their_own_extension_receptionists_everything(
    client, service, make_user
) -> None:
    anna_ws, *_ = await connect(client, await make_user("operator", "101"))
    maria_ws, *_ = await connect(client, await make_user("receptionist", "100"))
    async with anna_ws, maria_ws:
        await service.bus.publish(ringing("c1", "102"))
        await service.bus.publish(LinkStateChanged(name="office", kind="pbx", up=True))
        await service.bus.publish(ringing("c2", "101"))
        await service.bus.publish(LineStateChanged(extension="101", state=LineState.RINGING))

        seen_by_maria = await frames_until(maria_ws, lambda f: f["type"] == "lines")
        assert [(f["type"], f["data"].get("call_id")) for f in first_sight(seen_by_maria)] == [
            ("pop", "c1"),
            ("call.ringing", "c1"),
            ("link.state", None),
            ("pop", "c2"),
            ("call.ringing", "c2"),
            ("lines", None),
        ]
        assert seen_by_maria[0]["data"]["caller_name"] == "თბილისი ლტდ"
        assert seen_by_maria[0]["data"]["number_display"] == "+995 32 212 34 56"
        assert seen_by_maria[-1]["data"] == {"101": "ringing"}

        # Anna sees her call, and what everyone sees (links, the colleagues' lines).
        seen_by_anna = await frames_until(anna_ws, lambda f: f["type"] == "lines")
        assert [(f["type"], f["data"].get("call_id")) for f in first_sight(seen_by_anna)] == [
            ("link.state", None),
            ("pop", "c2"),
            ("call.ringing", "c2"),
            ("lines", None),
        ]
        seqs = [f["seq"] for f in seen_by_maria]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert {f["seq"] for f in seen_by_anna} <= set(seqs)


async def test_ring_group_pop_follows_the_call_for_every_ringing_operator(
    client, service, make_user
) -> None:
    anna_ws, *_ = await connect(client, await make_user("operator", "101"))
    giorgi_ws, *_ = await connect(client, await make_user("operator", "102"))
    async with anna_ws, giorgi_ws:
        for event in (
            ringing("rg", "101"),
            ringing("rg", "102"),
            CallAnswered(call_id="rg", extension="102", involved_extensions=("101", "102")),
            CallEnded(call_id="rg", outcome=Outcome.ANSWERED, involved_extensions=("101", "102")),
        ):
            await service.bus.publish(event)
        for ws in (anna_ws, giorgi_ws):
            frames = await frames_until(ws, lambda f: f["type"] == "call.ended")
            pops = [f["data"] for f in frames if f["type"] == "pop"]
            assert [(p["state"], p["ringing"], p["answered_by"]) for p in pops][-2:] == [
                ("answered", [], "102"),
                ("ended", [], "102"),
            ]
            assert pops[-1]["outcome"] == "answered"
        assert service.live.board.cards == {}


async def test_pop_is_filled_in_by_the_directory_then_history_and_tasks(
    client, service, make_user
) -> None:
    async with service.sessions() as session:
        manager = await auth.create_user(
            session, "anna", "operator", extension="101", display_name="Анна Смирнова"
        )
        client_row = await save_client(
            session,
            ClientIn("ООО Ромашка", manager_extension="101", phones=[PhoneIn(CALLER)]),
            "RU",
        )
        await session.flush()
        when = datetime(2026, 11, 1, 9, tzinfo=UTC)
        session.add(
            Activity(
                client_id=client_row.id,
                kind="call",
                ref="earlier",
                at=when,
                summary={"direction": "inbound", "outcome": "answered", "answered_by": "101"},
            )
        )
        session.add(
            CallbackTask(
                number=CALLER,
                client_id=client_row.id,
                assignee_extension="101",
                missed_call_id="missed-1",
                created_at=when,
            )
        )
        token = await auth.issue_token(session, manager)
        await session.commit()
    ws, *_ = await connect(client, token)
    async with ws:
        await service.bus.publish(ringing("c1", "101"))
        # The caller identifier asks the directory; the feed then loads history and tasks.
        frames = await frames_until(ws, lambda f: f["type"] == "pop" and f["data"]["tasks"])
        pops = [f["data"] for f in frames if f["type"] == "pop"]
        if service.engine.dialect.name == "sqlite":  # the directory answers at once there
            assert pops[0]["lookup"] == "found" and pops[0]["manager"]["extension"] == "101"
            assert len(pops) == 2 and not pops[0]["history"]  # history and tasks follow
        else:
            assert pops[0]["lookup"] == "pending" and pops[0]["client"] is None
        card = pops[-1]
        assert card["lookup"] == "found"
        assert card["client"]["name"] == "ООО Ромашка"
        assert card["manager"]["name"] == "Анна Смирнова"
        assert card["manager"]["extension"] == "101"
        assert [h["ref"] for h in card["history"]] == ["earlier"]
        assert card["history"][0]["outcome"] == "answered"
        assert [(t["number"], t["missed_calls"]) for t in card["tasks"]] == [(CALLER, 1)]


async def test_unknown_and_unavailable_directory_answers_show_on_the_pop(
    client, service, make_user
) -> None:
    ws, *_ = await connect(client, await make_user("receptionist"))
    async with ws:
        await service.bus.publish(ringing("c1", "101"))
        await service.bus.publish(
            CallIdentified(
                call_id="c1", extension="101", number=CALLER, match=None, unavailable=True
            )
        )
        frames = await frames_until(ws, lambda f: f["type"] == "call.identified")
        assert [f["data"]["lookup"] for f in frames if f["type"] == "pop"][-1] == "unavailable"


async def test_reconnect_resumes_with_exactly_what_was_missed(client, service, make_user) -> None:
    token = await make_user("operator", "101")
    steady, *_ = await connect(client, token)  # the same user, never disconnected
    flaky, hello, _ = await connect(client, token)
    await service.bus.publish(ringing("c1", "101"))
    seen = await frames_until(flaky, lambda f: f["type"] == "call.ringing")
    last_seq = max(f["seq"] for f in seen)
    await flaky.close()

    # While disconnected: the call is answered, someone else's call rings, another ours.
    await service.bus.publish(CallAnswered(call_id="c1", extension="101"))
    await service.bus.publish(ringing("c2", "102"))
    await service.bus.publish(ringing("c3", "101"))
    end_marker = LinkStateChanged(name="marker", kind="pbx", up=True)
    await service.bus.publish(end_marker)

    def is_marker(frame: dict) -> bool:
        return frame["type"] == "link.state" and frame["data"]["name"] == "marker"

    ws, hello2, resync = await connect(client, token, stream=hello["stream"], last_seq=last_seq)
    async with ws, steady:
        assert hello2["resumed"] is True and resync is None and hello2["seq"] == last_seq
        missed = await frames_until(ws, is_marker)
        expected = [f for f in await frames_until(steady, is_marker) if f["seq"] > last_seq]
        assert missed == expected
        pops = {f["data"]["call_id"]: f["data"] for f in missed if f["type"] == "pop"}
        assert pops["c1"]["answered_by"] == "101" and "c3" in pops and "c2" not in pops
        # Then live frames go on.
        await service.bus.publish(
            CallEnded(call_id="c1", outcome=Outcome.ANSWERED, involved_extensions=("101",))
        )
        frames = await frames_until(ws, lambda f: f["type"] == "call.ended")
        c1 = [
            f["data"]["state"]
            for f in frames
            if f["type"] == "pop" and f["data"]["call_id"] == "c1"
        ]
        assert c1[-1] == "ended"


async def test_reconnect_after_too_much_was_missed_gets_the_current_state(
    client, service, make_user
) -> None:
    token = await make_user("receptionist")
    ws, hello, _ = await connect(client, token)
    await ws.close()
    service.live.replay_frames = 3
    for n in range(5):
        await service.bus.publish(ringing(f"c{n}", "101"))
    await service.bus.publish(CallEnded(call_id="c0", outcome=Outcome.NO_ANSWER, missed=True))
    await asyncio.sleep(0.05)
    ws, hello2, resync = await connect(client, token, stream=hello["stream"], last_seq=hello["seq"])
    async with ws:
        assert hello2["resumed"] is False and resync["reason"] == "gap"
        assert sorted(p["call_id"] for p in resync["state"]["pops"]) == ["c1", "c2", "c3", "c4"]
    # Another service's stream (a restart) cannot be resumed either.
    ws, hello3, resync = await connect(client, token, stream="0123456789abcdef", last_seq=1)
    async with ws:
        assert hello3["resumed"] is False and resync["reason"] == "gap"


async def test_client_that_falls_behind_gets_a_resync_and_loses_nothing(
    client, service, make_user, monkeypatch
) -> None:
    # Every frame queues (as when the socket's buffer is full), and the queue overflows.
    monkeypatch.setattr(feed.Viewer, "push", feed.Viewer.queue)
    service.live.send_buffer = 3
    ws, *_ = await connect(client, await make_user("supervisor"))
    async with ws:
        for n in range(10):  # in one go: the connection's queue overflows
            service.bus.publish_nowait(ringing(f"c{n}", "101"))
        await asyncio.sleep(0.05)
        await service.bus.publish(ringing("after", "101"))
        # Every call reaches the client: in a resync's state or as a pop of its own (the
        # directory's answers keep coming meanwhile, and may overflow the queue again).
        expected = {f"c{n}" for n in range(10)} | {"after"}
        shown: set[str] = set()
        resyncs = []
        while shown != expected:
            frame = await receive(ws)
            if frame["type"] == "resync":
                resyncs.append(frame["reason"])
                shown |= {p["call_id"] for p in frame["state"]["pops"]}
            elif frame["type"] == "pop":
                shown.add(frame["data"]["call_id"])
        assert resyncs and set(resyncs) == {"lagged"}


async def test_heartbeat_when_idle(client, service, make_user) -> None:
    server = service.config.server.model_copy(update={"ws_heartbeat_seconds": 0.2})
    service.config = service.config.model_copy(update={"server": server})
    ws, hello, _ = await connect(client, await make_user("operator", "101"))
    async with ws:
        assert hello["heartbeat"] == 0.2
        assert await receive(ws) == {"type": "heartbeat", "seq": hello["seq"]}


@pytest.mark.skipif(not hasattr(socket, "TCP_USER_TIMEOUT"), reason="Linux's TCP_USER_TIMEOUT")
async def test_a_vanished_browser_is_dropped_by_the_kernel(client, service, make_user) -> None:
    ws, hello, _ = await connect(client, await make_user("operator", "101"))
    async with ws:
        (viewer,) = service.live._by_extension["101"]
        sock = viewer.transport.get_extra_info("socket")
        timeout = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)
        assert timeout == int(ws_module.DEAD_PEER_HEARTBEATS * hello["heartbeat"] * 1000)


async def test_closing_the_socket_detaches_the_viewer(client, service, make_user) -> None:
    ws, *_ = await connect(client, await make_user("supervisor"))
    assert service.live.viewers() == 1
    await ws.close()
    for _ in range(50):
        if service.live.viewers() == 0:
            break
        await asyncio.sleep(0.02)
    assert service.live.viewers() == 0


def test_cti_watch_describes_frames_for_people() -> None:
    from cti.cli import describe_frame

    card = {
        "state": "answered",
        "number_display": "+7 812 555-01-04",
        "caller_name": "Мария",
        "client": {"name": "ООО Ромашка"},
        "contact": "Иван",
        "manager": {"name": "Анна", "extension": "101"},
        "ringing": [],
        "answered_by": "102",
    }
    assert describe_frame({"type": "pop", "seq": 5, "data": card}) == [
        "pop answered  +7 812 555-01-04  ООО Ромашка  contact: Иван  manager: Анна (101)"
        "  answered by 102"
    ]
    resync = {"type": "resync", "seq": 5, "state": {"pops": [card], "lines": {}, "links": []}}
    assert describe_frame(resync)[0] == "1 calls ringing or in progress"
    assert describe_frame({"type": "lines", "seq": 6, "data": {"101": "ringing"}}) == [
        "lines      101=ringing"
    ]
    assert describe_frame({"type": "heartbeat", "seq": 6}) == []
