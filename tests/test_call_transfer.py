"""Blind transfer of a live call (the receptionist's "to the responsible manager" button):
which channel the tracker names, the AMI Redirect the adapter sends to a real TCP AMI
server (the simulator), and POST /api/calls/{call_id}/transfer on SQLite and PostgreSQL."""

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from helpers import bearer, eventually
from lab import FIXTURES, LAB_INBOUND_CONTEXTS, LAB_TRUNKS, lab_pbx

from cti.pbx import PbxCallNotFound as CallNotFound
from cti.service import Service
from pbx_adapters.asterisk.adapter import AsteriskAdapter
from pbx_adapters.asterisk.channels import ChannelMap
from pbx_adapters.asterisk.frames import Frame, UnsafeAction
from pbx_adapters.asterisk.simulator import (
    AmiSimulator,
    load_transcript,
    refresh_ids,
)
from pbx_adapters.asterisk.tracker import CallTracker

START = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def frames_of(name: str, seq: int = 0) -> list[Frame]:
    frames = load_transcript(FIXTURES / f"{name}.ami")
    return refresh_ids(frames, seq=seq) if seq else frames


def root_of(frames: list[Frame]) -> Frame:
    """The call's first channel: its Uniqueid is the Linkedid that names the call."""
    return next(f for f in frames if f.get("Event") == "Newchannel")


def call_id_of(frames: list[Frame]) -> str:
    return f"lab:{root_of(frames)['Linkedid']}"


def ringing_part(frames: list[Frame]) -> list[Frame]:
    """Up to the first operator's phone answering: every phone is still ringing."""
    cut = next(
        i
        for i, f in enumerate(frames)
        if f.get("Event") == "Newstate"
        and f.get("Channel", "").startswith("SIP/")
        and f.get("ChannelStateDesc") == "Up"
        and f.get("Linkedid") != f.get("Uniqueid")  # not the caller's own phone
    )
    return frames[:cut]


def answered_part(frames: list[Frame]) -> list[Frame]:
    """Up to the caller's channel entering the bridge with the phone that answered."""
    root = root_of(frames)["Uniqueid"]
    cut = next(
        i
        for i, f in enumerate(frames)
        if f.get("Event") == "BridgeEnter" and f.get("Uniqueid") == root
    )
    return frames[: cut + 1]


# -- the tracker: which channel a transfer moves ----------------------------------------


def tracker() -> CallTracker:
    return CallTracker(
        "lab", ChannelMap(trunk_patterns=LAB_TRUNKS), inbound_contexts=LAB_INBOUND_CONTEXTS
    )


def targets_along(name: str) -> list[str | None]:
    """Feed a transcript frame by frame; transfer_target of its call after each."""
    t = tracker()
    frames = frames_of(name)
    call_id = call_id_of(frames)
    seen = []
    for n, frame in enumerate(frames):
        t.feed(frame, START + timedelta(milliseconds=100 * n))
        seen.append(t.transfer_target(call_id))
    assert t.problems == 0
    return seen


@pytest.mark.parametrize(
    "name",
    [
        "sip_inbound_answered",
        "sip_ringgroup_answered",
        "sip_queue_answered",
        "sip_blind_transfer_refer",
        "sip_internal_call",  # the caller is an operator: their phone is the root
    ],
)
def test_the_target_is_the_callers_channel_while_it_lives(name: str) -> None:
    frames = frames_of(name)
    root = root_of(frames)
    seen = targets_along(name)
    born = frames.index(root)
    if name == "sip_internal_call":  # a call once the operator's phone dials another
        born = next(i for i, f in enumerate(frames) if f.get("Event") == "DialBegin")
    died = next(
        i
        for i, f in enumerate(frames)
        if f.get("Event") == "Hangup" and f.get("Uniqueid") == root["Uniqueid"]
    )
    assert seen[:born] == [None] * born
    assert seen[born:died] == [root["Channel"]] * (died - born)  # ringing, answered, bridged
    assert seen[died:] == [None] * (len(frames) - died)
    caller = ChannelMap(trunk_patterns=LAB_TRUNKS).extension_of(root["Channel"])
    assert caller == ("101" if name == "sip_internal_call" else None)


def test_an_outbound_call_moves_the_party_dialled_once_it_answered() -> None:
    frames = frames_of("sip_click_to_dial")
    remote = next(
        f["Channel"]
        for f in frames
        if f.get("Event") == "Newchannel" and "@remote-" in f["Channel"]
    )
    seen = targets_along("sip_click_to_dial")
    answered = next(
        i
        for i, f in enumerate(frames)
        if f.get("Event") == "Newstate"
        and f.get("Channel") == remote
        and f["ChannelStateDesc"] == "Up"
    )
    assert remote.endswith(";1")  # the side bridged with the operator, not the far end
    assert set(seen[:answered]) == {None}  # the operator's own phone is never the target
    assert seen[answered] == remote
    assert seen[-1] is None


def test_unknown_and_ended_calls_have_no_target() -> None:
    t = tracker()
    assert t.transfer_target("lab:1.2") is None
    frames = frames_of("sip_inbound_answered")
    for frame in frames:
        t.feed(frame, START)
    assert t.transfer_target(call_id_of(frames)) is None


# -- the adapter and the API against the simulator --------------------------------------


@pytest.fixture
async def pbx() -> AsyncIterator[AmiSimulator]:
    sim = AmiSimulator(username="cti", secret="lab-secret", chunking=random.Random(7))
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def lab(service: Service, pbx: AmiSimulator) -> AsteriskAdapter:
    """The service connected to the simulator as PBX "lab" (closed with the service)."""
    config = lab_pbx(pbx.port, "lab-secret")
    service.links.register("lab", "pbx")
    adapter = await service.start_pbx(config)
    await asyncio.wait_for(adapter.link_up.wait(), 10)
    return adapter


async def live(pbx: AmiSimulator, adapter: AsteriskAdapter, frames: list[Frame], ready) -> str:
    """Play ``frames``; the call's id once ``ready(call)`` holds for the tracked call."""
    call_id = call_id_of(frames)
    await pbx.play(frames)
    await eventually(lambda: (call := adapter.live_call(call_id)) is not None and ready(call))
    return call_id


def redirects(pbx: AmiSimulator) -> list[Frame]:
    return [a for a in pbx.actions if a.get("Action") == "Redirect"]


async def post_transfer(client, call_id: str, token: str, **body: str):
    return await client.post(
        f"/api/calls/{call_id}/transfer", json={"extension": "102", **body}, headers=bearer(token)
    )


@pytest.mark.parametrize(
    ("name", "stage", "seq"),
    [
        ("sip_inbound_answered", "ringing", 101),
        ("sip_inbound_answered", "answered", 102),
        ("sip_ringgroup_answered", "ringing", 103),
        ("sip_ringgroup_answered", "answered", 104),
    ],
)
async def test_transfer_redirects_the_external_caller(
    pbx, lab, client, make_user, name: str, stage: str, seq: int
) -> None:
    frames = frames_of(name, seq)
    if stage == "ringing":
        part = ringing_part(frames)
        call_id = await live(pbx, lab, part, lambda c: c.legs and c.answered_by is None)
    else:
        part = answered_part(frames)
        call_id = await live(pbx, lab, part, lambda c: c.answered_by is not None)
    token = await make_user("receptionist")
    response = await post_transfer(client, call_id, token)
    assert response.status == 202, await response.text()
    assert await response.json() == {"call_id": call_id, "extension": "102", "status": "requested"}
    [redirect] = redirects(pbx)
    caller = root_of(frames)["Channel"]
    assert caller.startswith("Local/20@callers-") and caller.endswith(";1")
    assert redirect["Channel"] == caller
    assert (redirect["Exten"], redirect["Context"], redirect["Priority"]) == (
        "102",
        "internal",  # the lab's transfer_context
        "1",
    )
    assert redirect["ActionID"].startswith("cti-redirect-")
    assert "ExtraChannel" not in redirect  # the operator's phone stays where it is


async def test_the_pbx_carrying_out_the_transfer_is_a_call_transferred(
    pbx, lab, service, client, make_user
) -> None:
    """What Asterisk does after the Redirect (the caller's channel dials 102, 101 hangs up)
    comes back as the tracker's usual call.transferred, from 101 to 102."""
    frames = frames_of("sip_blind_transfer_refer", 110)
    cut = next(i for i, f in enumerate(frames) if f.get("Event") == "BlindTransfer")
    call_id = await live(pbx, lab, frames[:cut], lambda c: c.answered_by == "101")
    events = service.bus.subscribe(prefixes=["call.transferred"])
    anna = await make_user("operator", "101")  # an operator may pass on her own call
    response = await post_transfer(client, call_id, anna)
    assert response.status == 202, await response.text()
    assert redirects(pbx)[0]["Channel"] == root_of(frames)["Channel"]
    await pbx.play(frames[cut + 1 :])  # a Redirect raises no BlindTransfer event
    transferred = await asyncio.wait_for(events.get(), 5)
    assert (transferred.call_id, transferred.from_extension, transferred.to_extension) == (
        call_id,
        "101",
        "102",
    )


async def test_operators_transfer_only_calls_they_are_on(pbx, lab, client, make_user) -> None:
    frames = frames_of("sip_inbound_answered", 120)
    call_id = await live(pbx, lab, ringing_part(frames), lambda c: c.legs)
    boris = await make_user("operator", "102")  # only 101 rings
    response = await post_transfer(client, call_id, boris)
    assert response.status == 404  # the same answer as for a call that does not exist
    no_phone = await make_user("sales")
    assert (await post_transfer(client, call_id, no_phone)).status == 404
    assert not redirects(pbx)
    for role, extension in (("operator", "101"), ("supervisor", None), ("admin", None)):
        token = await make_user(role, extension)
        response = await post_transfer(client, call_id, token, pbx="lab")
        assert response.status == 202, (role, await response.text())
    assert len(redirects(pbx)) == 3


async def test_unknown_and_ended_calls(pbx, lab, service, client, make_user) -> None:
    token = await make_user("receptionist")
    response = await post_transfer(client, "lab:1700000000.1", token)
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"
    frames = frames_of("sip_inbound_missed", 130)
    call_id = call_id_of(frames)
    await pbx.play(frames)
    await eventually(lambda: not lab.tracker.calls)
    await service.call_store.flush()
    response = await post_transfer(client, call_id, token)
    assert response.status == 409, await response.text()
    assert (await response.json())["error"]["code"] == "conflict"
    boris = await make_user("operator", "102")  # 101 rang, not 102: not his to know
    assert (await post_transfer(client, call_id, boris)).status == 404
    assert not redirects(pbx)


async def test_bad_requests_never_reach_the_pbx(pbx, lab, client, make_user) -> None:
    frames = frames_of("sip_inbound_answered", 140)
    call_id = await live(pbx, lab, ringing_part(frames), lambda c: c.legs)
    token = await make_user("receptionist")
    for extension in ("102\r\nAction: Hangup", "102\n", "10 2", "", "12345678901", "*72"):
        response = await client.post(
            f"/api/calls/{call_id}/transfer", json={"extension": extension}, headers=bearer(token)
        )
        assert response.status == 422, extension
        assert (await response.json())["error"]["code"] == "invalid_request"
    response = await post_transfer(client, call_id, token, pbx="elsewhere")
    assert response.status == 422
    with pytest.raises(UnsafeAction):  # the adapter refuses by itself too
        await lab.transfer(call_id, "102\r\nAction: Hangup")
    await asyncio.sleep(0.05)
    assert not redirects(pbx)


async def test_link_down_is_503(pbx, lab, client, make_user) -> None:
    frames = frames_of("sip_inbound_answered", 150)
    call_id = await live(pbx, lab, ringing_part(frames), lambda c: c.legs)
    token = await make_user("receptionist")
    await pbx.stop()
    await eventually(lambda: not lab.connected)
    response = await post_transfer(client, call_id, token)
    assert response.status == 503, await response.text()
    assert (await response.json())["error"]["code"] == "unavailable"


async def test_a_refused_redirect_is_502_with_the_pbx_message(pbx, lab, client, make_user) -> None:
    frames = frames_of("sip_ringgroup_answered", 160)
    call_id = await live(pbx, lab, answered_part(frames), lambda c: c.answered_by)
    # The caller hangs up just as the button is pressed: the PBX no longer has the
    # channel, the Hangup event has not reached us yet.
    del pbx.channels[root_of(frames)["Uniqueid"]]
    token = await make_user("receptionist")
    response = await post_transfer(client, call_id, token)
    assert response.status == 502, await response.text()
    error = (await response.json())["error"]
    assert "Channel does not exist" in error["message"]
    assert len(redirects(pbx)) == 1


async def test_no_live_channel_is_call_not_found(pbx, lab, client, make_user) -> None:
    frames = frames_of("sip_ringgroup_answered", 170)
    # Everything up to the caller's hangup: the operator's phone is still there.
    root = root_of(frames)
    cut = next(
        i
        for i, f in enumerate(frames)
        if f.get("Event") == "Hangup" and f.get("Uniqueid") == root["Uniqueid"]
    )
    call_id = await live(pbx, lab, frames[: cut + 1], lambda c: True)
    await eventually(lambda: lab.tracker.transfer_target(call_id) is None)
    assert lab.live_call(call_id) is not None
    with pytest.raises(CallNotFound):
        await lab.transfer(call_id, "102")
    response = await post_transfer(client, call_id, await make_user("receptionist"))
    assert response.status == 409, await response.text()
    assert not redirects(pbx)


async def test_hang_up_and_recording_act_on_the_calls_channel(pbx, lab, client, make_user) -> None:
    """The core's other commands reach Asterisk as AMI actions on the call's own channel:
    Hangup, MixMonitor and StopMixMonitor, with the same access rule as a transfer."""
    frames = frames_of("sip_inbound_answered", 160)
    call_id = await live(pbx, lab, ringing_part(frames), lambda c: c.legs)
    root = lab.tracker.transfer_target(call_id)  # inbound: the caller's (root) channel
    boris = await make_user("operator", "102")
    response = await client.post(f"/api/calls/{call_id}/hangup", json={}, headers=bearer(boris))
    assert response.status == 404
    token = await make_user("operator", "101")
    for record in (True, False):
        response = await client.post(
            f"/api/calls/{call_id}/recording", json={"record": record}, headers=bearer(token)
        )
        assert response.status == 202, await response.text()
    response = await client.post(f"/api/calls/{call_id}/hangup", json={}, headers=bearer(token))
    assert response.status == 202, await response.text()
    sent = [(a["Action"], a.get("Channel")) for a in pbx.actions]
    assert sent[-3:] == [("MixMonitor", root), ("StopMixMonitor", root), ("Hangup", root)]
