"""Against the real lab FreeSWITCH 1.10 with its real SIP phones: calls the service sees
live, click-to-dial and a blind transfer through the API, a recording started through
the API, the switch restarted mid-call and the Event Socket link cut mid-call.
(Run ../shared/lab/freeswitch/start.sh first; .ci/run does.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from fault_proxy import FaultProxy
from helpers import bearer, eventually, new_token
from lab_fs import (
    ESL,
    RECORDINGS,
    api,
    call_in,
    lab_marks,
    lab_settings,
    phone,
    quiet,
    restart_switch,
)

from cti.config import Config, DatabaseConfig, RecordingsConfig, ServerConfig
from cti.http.app import build_app
from cti.service import Service

pytestmark = lab_marks()


@pytest.fixture(autouse=True)
async def no_calls_left() -> AsyncIterator[None]:
    await quiet()
    yield
    await quiet()


def config(tmp_path, **overrides: object) -> Config:
    return Config(
        server=ServerConfig(data_dir=tmp_path, port=0),
        database=DatabaseConfig(auto_migrate=True),
        pbx=[lab_settings(**overrides)],
        recordings=RecordingsConfig(dir=str(RECORDINGS), pbx_dir=str(RECORDINGS)),
    )


@pytest.fixture
async def service(tmp_path) -> AsyncIterator[Service]:
    service = await Service.start(config(tmp_path))
    try:
        await asyncio.wait_for(service.pbx["fs"].link_up.wait(), 10)
        yield service
    finally:
        await service.close()


async def finished(client, token: str, number: str, seconds: float = 40) -> list[dict]:
    found: list[dict] = []

    async def ended() -> bool:
        response = await client.get("/api/calls", params={"number": number}, headers=bearer(token))
        found[:] = [c for c in (await response.json())["calls"] if not c["in_progress"]]
        return bool(found)

    await eventually(ended, seconds=seconds)
    return found


async def ringing(service: Service, extension: str) -> None:
    await eventually(lambda: service.pbx["fs"].lines().get(extension) == "ringing")
    await asyncio.sleep(0.5)  # baresip answers only once its own call is set up


async def test_an_inbound_call_answered_on_a_real_phone_pops_and_is_logged(
    service, aiohttp_client
) -> None:
    client = await aiohttp_client(build_app(service))
    token = await new_token(service, "supervisor")
    pops = service.bus.subscribe(prefixes=["call.ringing"])
    number = "+78125550181"
    await call_in("4952000", number, "Лаборатория ФС", talk_seconds=3)
    pop = await asyncio.wait_for(pops.get(), 10)
    assert (pop.extension, pop.external_number, pop.external_name) == (
        "101",
        number,
        "Лаборатория ФС",
    )
    await ringing(service, "101")
    await phone("101", "accept")
    [call] = await finished(client, token, number)
    assert (call["direction"], call["did"], call["answered_by"], call["outcome"]) == (
        "inbound",
        "4952000",
        "101",
        "answered",
    )
    assert not call["missed"] and call["talk_seconds"] > 1
    assert service.pbx["fs"].tracker.problems == 0


async def test_click_to_dial_through_the_api_rings_the_operators_phone(
    service, aiohttp_client
) -> None:
    client = await aiohttp_client(build_app(service))
    token = await new_token(service, "operator", extension="101")
    results = service.bus.subscribe(prefixes=["call.originate"])
    response = await client.post(
        "/api/calls", json={"number": "8 812 555-01-82"}, headers=bearer(token)
    )
    assert response.status == 202, await response.text()
    await ringing(service, "101")
    await phone("101", "accept")  # then the lab's PSTN party answers after 1 s
    result = await asyncio.wait_for(results.get(), 20)
    assert result.success and result.extension == "101"
    [call] = await finished(client, token, "+78125550182", seconds=40)
    assert (call["direction"], call["caller_extension"], call["outcome"]) == (
        "outbound",
        "101",
        "answered",
    )
    assert call["originate_id"] == result.request_id


async def answered_on_101(service, number: str, name: str, talk_seconds: int):
    """An outside caller rings in and 101 answers; returns the lab link's adapter."""
    await call_in("4952000", number, name, talk_seconds=talk_seconds)
    await ringing(service, "101")
    await phone("101", "accept")
    adapter = service.pbx["fs"]
    await eventually(
        lambda: any(s.call.answered_by == "101" for s in adapter.tracker.calls.values())
    )
    return adapter


async def test_a_blind_transfer_through_the_api_moves_the_caller_to_102(
    service, aiohttp_client
) -> None:
    client = await aiohttp_client(build_app(service))
    token = await new_token(service, "operator", extension="101")
    number = "+78125550183"
    adapter = await answered_on_101(service, number, "Transfer", talk_seconds=10)
    [call_id] = adapter.tracker.calls
    response = await client.post(
        f"/api/calls/{call_id}/transfer", json={"extension": "102"}, headers=bearer(token)
    )
    assert response.status == 202, await response.text()
    await ringing(service, "102")
    await phone("102", "accept")
    [call] = await finished(client, token, number)
    assert [(t["kind"], t["from"], t["to"]) for t in call["transfers"]] == [("blind", "101", "102")]
    assert (call["first_answered_by"], call["answered_by"], call["outcome"]) == (
        "101",
        "102",
        "answered",
    )


async def test_a_phones_sip_refer_is_a_blind_transfer(service, aiohttp_client) -> None:
    client = await aiohttp_client(build_app(service))
    token = await new_token(service, "supervisor")
    number = "+78125550187"
    await answered_on_101(service, number, "REFER", talk_seconds=10)
    await asyncio.sleep(0.5)
    await phone("101", "transfer", "102")  # baresip sends a SIP REFER to 102
    await ringing(service, "102")
    await phone("102", "accept")
    [call] = await finished(client, token, number)
    assert [(t["kind"], t["from"], t["to"]) for t in call["transfers"]] == [("blind", "101", "102")]
    assert (call["answered_by"], call["outcome"], call["missed"]) == ("102", "answered", False)


async def test_an_attended_transfer_passes_the_call_when_the_operator_hangs_up(
    service, aiohttp_client
) -> None:
    client = await aiohttp_client(build_app(service))
    token = await new_token(service, "supervisor")
    answers = service.bus.subscribe(prefixes=["call.answered"])
    number = "+78125550188"
    adapter = await answered_on_101(service, number, "Attended", talk_seconds=12)
    [state] = adapter.tracker.calls.values()
    operator = next(c.uuid for c in adapter.tracker.channels.values() if c.extension == "101")
    # What a phone's transfer key does on FreeSWITCH: att_xfer on the operator's own leg.
    await api(f"uuid_broadcast {operator} att_xfer::user/102@127.0.0.1 aleg")
    await ringing(service, "102")
    await phone("102", "accept")  # 101 and 102 talk; the caller waits
    await asyncio.sleep(1.5)
    assert state.call.answered_by == "101"  # taking the consultation is not taking the call
    await phone("101", "hangup")  # att_xfer bridges the caller with 102
    [call] = await finished(client, token, number)
    assert [(t["kind"], t["from"], t["to"]) for t in call["transfers"]] == [
        ("attended", "101", "102")
    ]
    assert (call["first_answered_by"], call["answered_by"], call["outcome"]) == (
        "101",
        "102",
        "answered",
    )
    seen = []
    while answers.pending():
        seen.append((await answers.get()).extension)
    assert seen == ["101", "102"]


async def test_a_recording_started_through_the_api_is_attached(service, aiohttp_client) -> None:
    client = await aiohttp_client(build_app(service))
    token = await new_token(service, "supervisor")
    number = "+78125550184"
    adapter = await answered_on_101(service, number, "Recorded", talk_seconds=4)
    [call_id] = adapter.tracker.calls
    response = await client.post(
        f"/api/calls/{call_id}/recording", json={"record": True}, headers=bearer(token)
    )
    assert response.status == 202, await response.text()
    [call] = await finished(client, token, number)
    assert call["recording_count"] == 1
    response = await client.get(f"/api/calls/{call['id']}/recordings", headers=bearer(token))
    [recording] = (await response.json())["recordings"]
    assert recording["source"] == "pbx"  # RECORD_START named it
    await eventually(lambda: recording_available(client, token, call["id"]), seconds=20)


async def recording_available(client, token: str, call_id: str) -> bool:
    response = await client.get(f"/api/calls/{call_id}/recordings", headers=bearer(token))
    [recording] = (await response.json())["recordings"]
    return recording["state"] == "available" and recording["size"] > 44


async def test_a_switch_restart_mid_call_closes_the_call_as_unknown_not_missed(
    service, aiohttp_client
) -> None:
    client = await aiohttp_client(build_app(service))
    token = await new_token(service, "supervisor")
    pops = service.bus.subscribe(prefixes=["call.ringing", "call.ended"])
    number = "+78125550185"
    await call_in("4952000", number, "Restart", talk_seconds=5)
    await ringing(service, "101")
    adapter = service.pbx["fs"]
    # Watched while the switch restarts: the link may be back before start.sh returns.
    link_lost = asyncio.create_task(eventually(lambda: not adapter.connected, seconds=40))
    await asyncio.get_running_loop().run_in_executor(None, restart_switch)
    await link_lost
    await eventually(lambda: adapter.connected, seconds=40)
    [call] = await finished(client, token, number)
    assert call["ended_while_disconnected"] and call["end_unknown"]
    assert (call["outcome"], call["missed"]) == ("unknown", False)
    seen = []
    while pops.pending():
        seen.append(await pops.get())
    assert [e.type for e in seen] == ["call.ringing", "call.ended"]  # no second pop


async def test_a_call_answered_while_the_esl_link_is_cut_is_answered_not_missed(
    tmp_path, aiohttp_client
) -> None:
    proxy = FaultProxy(ESL)
    await proxy.start()
    service = await Service.start(config(tmp_path, port=proxy.port))
    try:
        client = await aiohttp_client(build_app(service))
        token = await new_token(service, "supervisor")
        adapter = service.pbx["fs"]
        await asyncio.wait_for(adapter.link_up.wait(), 10)
        pops = service.bus.subscribe(prefixes=["call.ringing"])
        number = "+78125550186"
        await call_in("4952000", number, "Cut link", talk_seconds=6)
        await ringing(service, "101")
        proxy.mode = "refuse"
        proxy.cut()
        await eventually(lambda: not adapter.connected)
        await phone("101", "accept")  # answered while nobody listens
        await asyncio.sleep(1)
        proxy.mode = "pass"
        await eventually(lambda: adapter.connected, seconds=15)
        [call] = await finished(client, token, number)
        assert (call["outcome"], call["answered_by"], call["missed"]) == ("answered", "101", False)
        assert [p.extension for p in [await pops.get()]] == ["101"] and not pops.pending()
    finally:
        await service.close()
        await proxy.stop()
