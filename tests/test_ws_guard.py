"""An open /ws ends with its token; a flooding client is closed, not everyone's problem;
shutting down closes the sockets and lets go of the PBX and the modem at once."""

import asyncio
import time
from datetime import timedelta

import aiohttp
from helpers import bearer, eventually, open_feed, receive
from lab import lab_pbx
from sqlalchemy import update

from cti import auth
from cti.config import Config, DatabaseConfig, ModemConfig, ServerConfig
from cti.db.models import ApiToken, User
from cti.domain import Direction, utcnow
from cti.events import CallRinging
from cti.http import ws as ws_module
from cti.service import serve
from cti.sockets import CLOSE_GOING_AWAY, CLOSE_UNAUTHORIZED
from gsm_modem.emulator import ModemEmulator
from pbx_adapters.asterisk.simulator import AmiSimulator

PASSWORD = "пароль-ქართული"


async def closed_with(ws, seconds: float = 5.0) -> int:
    """The close code, once the server closes the socket (frames before it are skipped)."""
    async with asyncio.timeout(seconds):
        while True:
            msg = await ws.receive()
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                return ws.close_code


async def session_token(client, service) -> str:
    async with service.sessions() as session:
        await auth.create_user(session, "nino", "operator", extension="103", password=PASSWORD)
        await session.commit()
    reply = await client.post("/api/session", json={"username": "nino", "password": PASSWORD})
    return (await reply.json())["token"]


async def test_signing_out_closes_the_open_socket(client, service) -> None:
    token = await session_token(client, service)
    ws = await open_feed(client, token)
    started = time.monotonic()
    assert (await client.delete("/api/session", headers=bearer(token))).status == 200
    assert await closed_with(ws) == CLOSE_UNAUTHORIZED
    assert time.monotonic() - started < service.sockets.interval  # asked at once


async def test_expiry_and_revocation_elsewhere_close_the_socket(client, service) -> None:
    service.sockets.interval = 0.2
    service.sockets.recheck_soon()  # its current wait was for the old interval
    expiring = await session_token(client, service)
    async with service.sessions() as session:
        user = await auth.create_user(session, "giorgi", "operator", extension="102")
        revoked = await auth.issue_token(session, user)
        disabled_user = await auth.create_user(session, "lela", "operator", extension="104")
        disabled = await auth.issue_token(session, disabled_user)
        await session.commit()
    sockets = [await open_feed(client, t) for t in (expiring, revoked, disabled)]
    async with service.sessions() as session:  # as `cti user revoke` from another process
        await session.execute(
            update(ApiToken)
            .where(ApiToken.token_hash == auth.hash_token(expiring))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.execute(
            update(ApiToken)
            .where(ApiToken.token_hash == auth.hash_token(revoked))
            .values(revoked_at=utcnow())
        )
        await session.execute(update(User).where(User.username == "lela").values(is_active=False))
        await session.commit()
    for ws in sockets:
        assert await closed_with(ws) == CLOSE_UNAUTHORIZED


async def test_a_flooding_client_is_closed_and_others_keep_their_pops(
    client, service, make_user
) -> None:
    flooder = await open_feed(client, await make_user("receptionist"))
    other = await open_feed(client, await make_user("receptionist"))
    async with flooder, other:
        for _ in range(200):
            await flooder.send_str('{"type": "ping"}')
        assert await closed_with(flooder) == 1008
        await service.bus.publish(
            CallRinging(call_id="c1", extension="101", direction=Direction.INBOUND)
        )
        frame = await receive(other)
        assert (frame["type"], frame["data"]["call_id"]) == ("pop", "c1")
    assert (await (await client.get("/healthz")).json())["status"] == "ok"


async def test_deeply_nested_and_oversized_frames_hurt_nothing(client, make_user) -> None:
    ws = await open_feed(client, await make_user("receptionist"))
    async with ws:
        await ws.send_str("[" * 4000)  # nested past the parser's recursion limit
        await ws.send_str('{"type": "ping"}')
        assert (await receive(ws))["type"] == "pong"
        await ws.send_str(" " * 100_000)
        assert await closed_with(ws) == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    ws = await open_feed(client, await make_user("receptionist"))  # the next one is fine
    await ws.close()


async def test_a_slow_pinger_is_never_cut_off(client, make_user, monkeypatch) -> None:
    monkeypatch.setattr(ws_module, "FRAME_BURST", 3)
    ws = await open_feed(client, await make_user("receptionist"))
    async with ws:
        for _ in range(10):  # the burst, then under the rate (5 a second)
            await ws.send_str('{"type": "ping"}')
            assert (await receive(ws))["type"] == "pong"
            await asyncio.sleep(0.25)


async def test_shutdown_closes_sockets_and_lets_go_of_pbx_and_modem_quickly(tmp_path) -> None:
    pbx = AmiSimulator(username="cti", secret="s3cret")
    await pbx.start()
    async with ModemEmulator(send_delay=0.01) as modem:
        config = Config(
            server=ServerConfig(data_dir=tmp_path, port=0),
            database=DatabaseConfig(
                url=f"sqlite+aiosqlite:///{tmp_path}/cti.db", auto_migrate=True
            ),
            pbx=[lab_pbx(pbx.port, "s3cret")],
            modem=[ModemConfig(name="sim1", port=str(modem.path))],
        )
        stop = asyncio.Event()
        started: asyncio.Future = asyncio.get_running_loop().create_future()

        async def on_started(service, url: str) -> None:
            await asyncio.wait_for(service.pbx["lab"].link_up.wait(), 10)
            await eventually(lambda: service.modems["sim1"].modem.ready)
            started.set_result((service, url))

        server = asyncio.create_task(serve(config, on_started=on_started, stop=stop))
        service, url = await asyncio.wait_for(started, 20)
        async with service.sessions() as session:
            user = await auth.create_user(session, "maria", "receptionist")
            token = await auth.issue_token(session, user)
            await session.commit()
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(f"{url}/ws", headers=bearer(token))
            assert (await receive(ws))["type"] == "hello"
            began = time.monotonic()
            stop.set()  # what SIGTERM does
            assert await closed_with(ws) == CLOSE_GOING_AWAY
            await asyncio.wait_for(server, 10)
            took = time.monotonic() - began
        assert took < 5, f"shutdown took {took:.1f} s"
        assert not service.modems["sim1"].modem.ready
        await eventually(lambda: not pbx.connections)
    await pbx.stop()
