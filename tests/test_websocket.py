"""/ws: authenticated, filtered by what the user may see, never blocking the bus."""

import asyncio

import aiohttp
import pytest
from helpers import bearer

from cti.domain import Direction, LineState
from cti.events import CallRinging, LineStateChanged, LinkStateChanged
from cti.http import ws as ws_module


def ringing(call_id: str, extension: str) -> CallRinging:
    return CallRinging(
        call_id=call_id,
        extension=extension,
        direction=Direction.INBOUND,
        external_number="+995322123456",
        external_name="თბილისი ლტდ",
    )


async def receive(ws) -> dict:
    return await asyncio.wait_for(ws.receive_json(), 2.0)


async def test_header_auth_and_hello(client, make_user) -> None:
    token = await make_user("operator", "101", username="anna")
    async with client.ws_connect("/ws", headers=bearer(token)) as ws:
        hello = await receive(ws)
        assert hello["type"] == "hello" and hello["seq"] == 1
        assert hello["user"]["extension"] == "101"


async def test_first_frame_auth_for_browsers(client, make_user) -> None:
    token = await make_user("receptionist", "100")
    async with client.ws_connect("/ws") as ws:
        await ws.send_json({"type": "auth", "token": token})
        assert (await receive(ws))["type"] == "hello"
        await ws.send_json({"type": "ping"})
        pong = await receive(ws)
        assert pong["type"] == "pong" and pong["seq"] == 2


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
    anna = await make_user("operator", "101")
    maria = await make_user("receptionist", "100")
    async with (
        client.ws_connect("/ws", headers=bearer(anna)) as anna_ws,
        client.ws_connect("/ws", headers=bearer(maria)) as maria_ws,
    ):
        await receive(anna_ws)
        await receive(maria_ws)
        await service.bus.publish(ringing("c1", "102"))
        await service.bus.publish(LinkStateChanged(name="office", kind="pbx", up=True))
        await service.bus.publish(ringing("c2", "101"))
        await service.bus.publish(LineStateChanged(extension="101", state=LineState.RINGING))

        seen_by_maria = [await receive(maria_ws) for _ in range(4)]
        assert [f["type"] for f in seen_by_maria] == [
            "call.ringing",
            "link.state",
            "call.ringing",
            "line.state",
        ]
        assert [f["seq"] for f in seen_by_maria] == [2, 3, 4, 5]
        assert seen_by_maria[0]["data"]["external_name"] == "თბილისი ლტდ"

        seen_by_anna = [await receive(anna_ws) for _ in range(2)]
        assert [(f["type"], f["data"]["extension"]) for f in seen_by_anna] == [
            ("call.ringing", "101"),
            ("line.state", "101"),
        ]
        assert [f["seq"] for f in seen_by_anna] == [2, 3]


async def test_client_that_falls_behind_is_told_to_resync(
    client, service, make_user, monkeypatch
) -> None:
    monkeypatch.setattr(ws_module, "QUEUE_SIZE", 3)
    token = await make_user("supervisor")
    async with client.ws_connect("/ws", headers=bearer(token)) as ws:
        await receive(ws)
        for n in range(10):  # in one go: the connection's queue overflows
            service.bus.publish_nowait(ringing(f"c{n}", "101"))
        await service.bus.publish(ringing("after", "101"))
        resync = await receive(ws)
        assert resync["type"] == "resync" and resync["dropped"] > 0
        kept = []
        while (frame := await receive(ws))["data"]["call_id"] != "after":
            kept.append(frame["data"]["call_id"])
        # Nothing vanished silently: each event was either delivered or counted as dropped.
        assert resync["dropped"] + len(kept) == 10
        assert kept == [f"c{n}" for n in range(10 - len(kept), 10)]


async def test_closing_the_socket_releases_its_subscription(client, service, make_user) -> None:
    token = await make_user("supervisor")
    before = list(service.bus._subscriptions)  # the service's own (caller identification)
    async with client.ws_connect("/ws", headers=bearer(token)) as ws:
        await receive(ws)
        assert len(service.bus._subscriptions) == len(before) + 1
    for _ in range(50):
        if service.bus._subscriptions == before:
            break
        await asyncio.sleep(0.02)
    assert service.bus._subscriptions == before
