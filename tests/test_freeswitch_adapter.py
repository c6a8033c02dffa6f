"""The FreeSWITCH adapter end to end: a real TCP Event Socket (the simulator) replaying
the lab's recordings in small random pieces, in the format the adapter asked for, and
the service storing the calls, dialling and transferring through it."""

import asyncio
from collections.abc import AsyncIterator

import pytest
from fs_lab import SCENARIOS, SHIPPED, check_call, lab_pbx
from helpers import bearer, eventually
from sqlalchemy import select

from cti.clients.models import CallbackTask
from cti.config import Config, DatabaseConfig, ServerConfig
from cti.http.app import build_app
from cti.pbx import PbxRefused
from cti.service import Service
from pbx_adapters.freeswitch.simulator import EslSimulator, load_transcript, refresh

PASSWORD = "lab-secret-ä"


@pytest.fixture
async def switch() -> AsyncIterator[EslSimulator]:
    sim = EslSimulator(PASSWORD, chunked=True, seed=7, heartbeat_interval=0.3)
    sim.originate_call = load_transcript(SHIPPED / "click_to_dial.json.esl.gz")
    await sim.start()
    yield sim
    await sim.stop()


async def start_service(db_url, tmp_path, port: int, **options) -> Service:
    config = Config(
        server=ServerConfig(data_dir=tmp_path),
        database=DatabaseConfig(url=db_url, auto_migrate=True),
        pbx=[lab_pbx(port, PASSWORD, **options)],
    )
    service = await Service.start(config)
    await asyncio.wait_for(service.pbx["fs"].link_up.wait(), 10)
    return service


@pytest.fixture
async def lab(db_url, tmp_path, switch) -> AsyncIterator[Service]:
    service = await start_service(db_url, tmp_path, switch.port)
    yield service
    await service.close()


@pytest.fixture
async def api(lab, aiohttp_client):
    return await aiohttp_client(build_app(lab))


def recorded(name: str) -> list[dict]:
    return refresh(load_transcript(SHIPPED / f"{name}.json.esl.gz"))


async def stored_calls(service: Service) -> list[dict]:
    from cti.callstore import CallFilter, find_calls

    await service.call_store.flush()
    async with service.sessions() as session:
        return await find_calls(session, CallFilter(), limit=1000)


async def replay(sim: EslSimulator, service: Service, events: list[dict]) -> None:
    """Play a call's events and wait until the adapter has seen the call end."""
    await sim.play(events)
    tracker = service.pbx["fs"].tracker
    legs = {e.get("Unique-ID") for e in events}
    known = next((c.call_id for c in tracker.channels.values() if c.uuid in legs), None)
    creates = (e["Unique-ID"] for e in events if e.get("Event-Name") == "CHANNEL_CREATE")
    call_id = known or tracker.call_id(next(creates))
    await eventually(lambda: tracker.follows(call_id) and call_id not in tracker.calls)


def link_detail(service: Service) -> str:
    return {link.name: link for link in service.links.all()}["fs"].detail


def cut_at(events: list[dict], name: str, channel: str = "") -> int:
    return next(
        i
        for i, e in enumerate(events)
        if e.get("Event-Name") == name and e.get("Channel-Name", "").startswith(channel)
    )


@pytest.mark.parametrize("fmt", ["json", "plain"])
async def test_every_recording_over_tcp_is_stored_right(switch, db_url, tmp_path, fmt) -> None:
    lab = await start_service(db_url, tmp_path, switch.port, event_format=fmt)
    try:
        await replay_all(switch, lab)
    finally:
        await lab.close()


async def replay_all(switch: EslSimulator, lab: Service) -> None:
    events = lab.bus.subscribe(prefixes=["call.ringing"], maxsize=10_000)
    for name in SCENARIOS:
        await replay(switch, lab, recorded(name))
    calls = await stored_calls(lab)
    assert len(calls) == len(SCENARIOS)
    for name, call in zip(SCENARIOS, sorted(calls, key=lambda c: c["started_at"]), strict=True):
        check_call(name, call)
    assert lab.pbx["fs"].tracker.problems == 0
    rung = 0
    while events.pending():
        await events.get()
        rung += 1
    assert rung == sum(len(c["legs"]) for c in calls)


async def test_the_subscription_asks_only_for_what_is_read(switch, lab) -> None:
    client = next(iter(switch.clients))
    assert client.format == "json"
    assert not client.all and "CHANNEL_CREATE" in client.names
    assert "CODEC" not in client.names and "CHANNEL_STATE" not in client.names
    assert ("CC-Action", "member-queue-end") in client.filters
    # The password goes in the auth line only: never in a command or the log.
    assert all(PASSWORD not in c for c in switch.commands)


async def test_click_to_dial_rings_the_operator_then_dials_the_number(switch, lab, api, make_user):
    token = await make_user("operator", "101")
    results = lab.bus.subscribe(prefixes=["call.originate"])
    response = await api.post(
        "/api/calls", json={"number": "+7 (812) 555-01-08"}, headers=bearer(token)
    )
    assert response.status == 202, await response.text()
    accepted = await response.json()
    assert (accepted["extension"], accepted["number"]) == ("101", "88125550108")
    await eventually(lambda: any(c.startswith("originate") for c in switch.commands))
    [originate] = [c for c in switch.commands if c.startswith("originate")]
    variables, _, rest = originate.removeprefix("originate {").partition("}")
    assert rest == "user/101@127.0.0.1 88125550108 XML default"
    assert f"cti_request_id={accepted['request_id']}" in variables.split(",")
    assert "origination_caller_id_number=88125550108" in variables.split(",")
    result = await asyncio.wait_for(results.get(), 5)
    assert (result.request_id, result.success, result.extension) == (
        accepted["request_id"],
        True,
        "101",
    )
    await eventually(lambda: not lab.pbx["fs"].tracker.calls)
    [call] = await stored_calls(lab)
    assert (call["direction"], call["external_number"], call["caller_extension"]) == (
        "outbound",
        "+78125550108",
        "101",
    )
    assert call["outcome"] == "answered" and call["originate_id"] == accepted["request_id"]


async def test_failed_click_to_dial_says_why(switch, lab, api, make_user) -> None:
    switch.originate_call = None  # the switch answers -ERR USER_NOT_REGISTERED
    token = await make_user("operator", "101")
    results = lab.bus.subscribe(prefixes=["call.originate"])
    response = await api.post("/api/calls", json={"number": "88125550108"}, headers=bearer(token))
    assert response.status == 202
    result = await asyncio.wait_for(results.get(), 5)
    assert (result.success, result.code) == (False, "unavailable")


@pytest.mark.parametrize(
    "number",
    [
        "88125550108\n\napi fsctl shutdown",
        "8812555}0108",
        "88125550108 &park",
        "user/102",
        "8812555,0108",
        "88125550108'",
        "{origination_uuid=x}88125550108",
    ],
)
async def test_click_to_dial_refuses_what_could_break_out_of_the_command(
    switch, lab, api, make_user, number
) -> None:
    token = await make_user("operator", "101")
    response = await api.post("/api/calls", json={"number": number}, headers=bearer(token))
    assert response.status == 422
    assert not [c for c in switch.commands if c.startswith("originate")]


async def test_blind_transfer_through_the_api(switch, lab, api, make_user) -> None:
    token = await make_user("operator", "101")
    events = recorded("blind_transfer")
    cut = cut_at(events, "CHANNEL_UNBRIDGE")  # answered by 101, before the recorded move
    await switch.play(events[:cut])
    adapter = lab.pbx["fs"]
    await eventually(
        lambda: any(s.call.answered_by == "101" for s in adapter.tracker.calls.values())
    )
    [state] = adapter.tracker.calls.values()
    trunk = next(e["Unique-ID"] for e in events if e.get("Channel-Name") == "loopback/4952000-b")
    response = await api.post(
        f"/api/calls/{state.call.id}/transfer", json={"extension": "102"}, headers=bearer(token)
    )
    assert response.status == 202, await response.text()
    assert switch.commands[-1] == f"uuid_transfer {trunk} 102 XML default"
    await replay(switch, lab, events[cut:])
    [call] = await stored_calls(lab)
    check_call("blind_transfer", call)


async def test_hang_up_and_record_act_on_the_callers_leg(switch, lab, api, make_user) -> None:
    token = await make_user("supervisor")
    events = recorded("inbound_answered")
    cut = cut_at(events, "CHANNEL_BRIDGE") + 1
    await switch.play(events[:cut])
    adapter = lab.pbx["fs"]
    await eventually(lambda: adapter.tracker.calls)
    [call_id] = adapter.tracker.calls
    trunk = next(e["Unique-ID"] for e in events if e.get("Channel-Name") == "loopback/4952000-b")
    response = await api.post(
        f"/api/calls/{call_id}/recording", json={"record": True}, headers=bearer(token)
    )
    assert response.status == 202, await response.text()
    assert switch.commands[-1] == (
        f"uuid_record {trunk} start /var/lib/freeswitch/recordings/cti-{trunk}.wav"
    )
    response = await api.post(f"/api/calls/{call_id}/hangup", json={}, headers=bearer(token))
    assert response.status == 202
    assert switch.commands[-1] == f"uuid_kill {trunk}"
    await replay(switch, lab, events[cut:])


async def test_reconnect_mid_call_resumes_without_losing_or_duplicating(switch, lab) -> None:
    adapter = lab.pbx["fs"]
    seen = lab.bus.subscribe(prefixes=["call.", "link."], maxsize=10_000)
    events = recorded("ringgroup_answered_by_102")
    cut = cut_at(events, "CHANNEL_PROGRESS", "sofia/")  # both phones ringing
    await switch.play(events[:cut])
    await eventually(lambda: sum(len(s.call.legs) for s in adapter.tracker.calls.values()) == 2)
    switch.drop_clients()
    await eventually(lambda: not adapter.connected)
    await eventually(lambda: adapter.connected)  # back, state reloaded
    assert switch.commands.count("show channels as json") == 2
    await replay(switch, lab, events[cut:])
    [call] = await stored_calls(lab)
    check_call("ringgroup_answered_by_102", call)
    out = []
    while seen.pending():
        out.append(await seen.get())
    assert sorted(e.extension for e in out if e.type == "call.ringing") == ["101", "102"]
    assert [e.type for e in out if e.type == "call.ended"] == ["call.ended"]
    assert [e.up for e in out if e.type == "link.state"] == [False, True]


async def test_a_call_that_ended_while_the_link_was_down_is_closed_and_marked(switch, lab) -> None:
    adapter = lab.pbx["fs"]
    events = recorded("inbound_missed")
    cut = cut_at(events, "CHANNEL_PROGRESS", "sofia/")
    await switch.play(events[:cut])
    await eventually(lambda: adapter.tracker.calls)
    switch.drop_clients()
    await switch.play(events[cut:])  # nobody listening: the call ends unseen
    await eventually(lambda: adapter.connected and not adapter.tracker.calls)
    [call] = await stored_calls(lab)
    assert call["ended_while_disconnected"] and call["end_unknown"]
    assert (call["outcome"], call["missed"]) == ("unknown", False)
    assert call["external_number"] == "+78125550102"
    async with lab.sessions() as session:
        assert (await session.scalars(select(CallbackTask))).all() == []


async def test_a_silent_link_is_dropped_and_reconnected(switch, lab) -> None:
    await asyncio.sleep(3)  # HEARTBEATs keep it up past heartbeat_timeout (2 s)
    versions = switch.commands.count("version")
    assert versions == 1
    switch.heartbeat_interval = None  # silence: after heartbeat_timeout it is redone
    await eventually(lambda: switch.commands.count("version") > versions, seconds=8)
    await eventually(lambda: lab.pbx["fs"].connected)


async def test_a_wrong_password_or_a_rejection_keeps_the_link_down(db_url, tmp_path) -> None:
    sim = EslSimulator("other-password")
    await sim.start()
    config = Config(
        server=ServerConfig(data_dir=tmp_path),
        database=DatabaseConfig(url=db_url, auto_migrate=True),
        pbx=[lab_pbx(sim.port, PASSWORD)],
    )
    service = await Service.start(config)
    try:
        await eventually(lambda: "refused" in link_detail(service))
        assert not service.pbx["fs"].connected
        sim.reject = True
        await eventually(lambda: "Access Denied" in link_detail(service))
        assert not service.pbx["fs"].connected
    finally:
        await service.close()
        await sim.stop()


@pytest.mark.parametrize(
    ("answer", "attempts"),
    [
        ("fax", [(False, True, False, ""), (True, True, True, "")]),
        ("busy", [(False, False, True, "busy")]),
        ("voice", [(False, True, False, ""), (False, True, True, "failed")]),
    ],
)
async def test_a_fax_is_sent_with_txfax_and_its_result_reported(
    switch, db_url, tmp_path, answer, attempts
) -> None:
    lab = await start_service(
        db_url, tmp_path, switch.port, fax_dialstring="sofia/gateway/t/{number}"
    )
    try:
        switch.fax_answer = answer
        results = lab.bus.subscribe(prefixes=["fax.attempt"])
        adapter = lab.pbx["fs"]
        assert adapter.sends_faxes
        await adapter.send_fax("+7 812 555-01-13", "/var/spool/fax/out-1.tif", "job-1")
        await eventually(lambda: any(c.startswith("originate") for c in switch.commands))
        [command] = [c for c in switch.commands if c.startswith("originate")]
        assert command.endswith("}sofia/gateway/t/88125550113 &txfax(/var/spool/fax/out-1.tif)")
        seen = [await asyncio.wait_for(results.get(), 5) for _ in attempts]
        assert [(a.success, a.connected, a.final, a.code) for a in seen] == attempts
        assert all(a.request_id == "job-1" for a in seen)
        assert seen[-1].pages == (1 if answer == "fax" else None if answer == "busy" else 0)
        assert not adapter.tracker.calls and not await stored_calls(lab)  # not a call
        with pytest.raises(PbxRefused):
            await adapter.send_fax("88125550113", "/tmp/a file.tif", "job-2")  # noqa: S108
    finally:
        await lab.close()


async def test_junk_events_are_skipped_and_the_feed_goes_on(switch, lab) -> None:
    junk = [
        {"Event-Name": "CHANNEL_HANGUP_COMPLETE", "Unique-ID": ["not", "a", "uuid"]},
        {"Event-Name": "CUSTOM", "Event-Subclass": "spandsp::txfaxresult", "Unique-ID": {}},
        {"Event-Name": ["CHANNEL_CREATE"], "Unique-ID": "x"},
        {"Event-Name": "CHANNEL_CREATE", "Unique-ID": "y", "Event-Date-Timestamp": "-1"},
    ]
    for event in junk:
        await switch.broadcast(event)
    await replay(switch, lab, recorded("busy"))
    [call] = await stored_calls(lab)
    check_call("busy", call)
    assert lab.pbx["fs"].connected
