"""The AMI simulator: a real TCP AMI server replaying recorded Asterisk 20 transcripts."""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import AsyncIterator, Callable

import pytest
from lab import FIXTURES, SHARED_FIXTURES

from pbx_adapters.asterisk.frames import AmiParser, Frame, encode_action
from pbx_adapters.asterisk.simulator import AmiSimulator, load_transcript, refresh_ids

SECRET = "secret"  # the simulator's default
UNIQUE_ID = re.compile(r"^\d+\.\d+$")


def transcript(name: str) -> list[Frame]:
    return load_transcript(FIXTURES / f"{name}.ami")


class Client:
    """A bare AMI client: a raw asyncio stream and the project's parser."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = AmiParser()
        self.pending: list[Frame] = []
        self.reads: list[bytes] = []

    @classmethod
    async def connect(cls, sim: AmiSimulator) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
        return cls(reader, writer)

    async def send(self, **fields: str) -> None:
        self.writer.write(encode_action(fields))
        await self.writer.drain()

    async def frame(self, within: float = 2.0) -> Frame:
        async with asyncio.timeout(within):
            while not self.pending:
                data = await self.reader.read(65536)
                if not data:
                    raise EOFError("server closed the connection")
                self.reads.append(data)
                self.pending.extend(self.parser.feed(data))
        return self.pending.pop(0)

    async def frames(self, count: int) -> list[Frame]:
        return [await self.frame() for _ in range(count)]

    async def until(self, event: str) -> list[Frame]:
        """Frames up to and including the first with this Event."""
        got = [await self.frame()]
        while got[-1].get("Event") != event:
            got.append(await self.frame())
        return got

    async def login(self, secret: str = SECRET) -> Frame:
        await self.send(Action="Login", ActionID="l1", Username="cti", Secret=secret)
        return await self.frame()

    async def closed(self, within: float = 2.0) -> bool:
        """True once the server has closed the connection (EOF or reset)."""
        try:
            async with asyncio.timeout(within):
                while data := await self.reader.read(65536):
                    self.pending.extend(self.parser.feed(data))
        except ConnectionError:
            pass
        return True

    async def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def sim() -> AsyncIterator[AmiSimulator]:
    simulator = AmiSimulator()
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def client(sim: AmiSimulator) -> AsyncIterator[Client]:
    connection = await Client.connect(sim)
    assert (await connection.login())["Response"] == "Success"
    assert (await connection.frame())["Event"] == "FullyBooted"
    await sim.wait_for_client()
    yield connection
    await connection.close()


# --- transcripts --------------------------------------------------------------------------


def test_load_transcript_keeps_only_replayable_events() -> None:
    raw = AmiParser().feed((FIXTURES / "sip_inbound_answered.ami").read_bytes())
    frames = transcript("sip_inbound_answered")
    assert all("Event" in frame for frame in frames)
    assert not any(f["Event"] in ("FullyBooted", "SuccessfulAuth") for f in frames)
    # everything with an Event except the lab session's two frames is kept, in order
    kept = [f for f in raw if "Event" in f and f["Event"] not in ("FullyBooted", "SuccessfulAuth")]
    assert frames == kept
    assert len(raw) - len(frames) == sum("Event" not in f for f in raw) + 2
    assert any(f.get("CallerIDName") == "Мария Сидорова" for f in frames)


# --- protocol -----------------------------------------------------------------------------


async def test_login_success(sim: AmiSimulator) -> None:
    connection = await Client.connect(sim)
    response = await connection.login()
    assert response == {
        "Response": "Success",
        "ActionID": "l1",
        "Message": "Authentication accepted",
    }
    booted = await connection.frame()
    assert booted == {
        "Event": "FullyBooted",
        "Privilege": "system,all",
        "Uptime": "1",
        "LastReload": "1",
        "Status": "Fully Booted",
    }
    assert connection.parser.version == "9.0.0"
    await sim.wait_for_client(timeout=1)
    assert sim.connections == 1
    assert sim.actions == [
        {"Action": "Login", "ActionID": "l1", "Username": "cti", "Secret": "secret"}
    ]
    await connection.close()


async def test_login_failure_closes_the_connection(sim: AmiSimulator) -> None:
    connection = await Client.connect(sim)
    response = await connection.login(secret="wrong")
    assert response == {"Response": "Error", "ActionID": "l1", "Message": "Authentication failed"}
    assert await connection.closed()
    assert sim.connections == 0
    assert sim.actions[-1]["Secret"] == "wrong"
    with pytest.raises(TimeoutError):
        await sim.wait_for_client(timeout=0.05)
    await connection.close()


async def test_actions_before_login_and_without_action_are_refused(sim: AmiSimulator) -> None:
    connection = await Client.connect(sim)
    await connection.send(Action="Ping", ActionID="p0")
    assert await connection.frame() == {
        "Response": "Error",
        "ActionID": "p0",
        "Message": "Permission denied",
    }
    await connection.send(ActionID="x1", Foo="bar")
    assert await connection.frame() == {
        "Response": "Error",
        "ActionID": "x1",
        "Message": "Missing action in request",
    }
    # garbage does not crash the server; the connection still works afterwards
    connection.writer.write(b"\xff\xfe not ami at all\r\n\r\n\r\n\r\n")  # no field: ignored
    connection.writer.write(b"\xc3: half a char\r\n\x00\r\n\r\n")
    assert (await connection.frame())["Message"] == "Missing action in request"
    connection.writer.write(b"Action: Ping\r\nActionID: a\nb\x00c\r\n\r\n")  # LF, NUL
    assert await connection.frame() == {
        "Response": "Error",
        "ActionID": "abc",
        "Message": "Permission denied",
    }
    assert (await connection.login())["Response"] == "Success"
    await connection.close()


async def test_ping_and_unknown_action(sim: AmiSimulator, client: Client) -> None:
    await client.send(Action="Ping", ActionID="p1")
    pong = await client.frame()
    assert (pong["Response"], pong["ActionID"], pong["Ping"]) == ("Success", "p1", "Pong")
    assert abs(float(pong["Timestamp"]) - time.time()) < 60
    await client.send(action="ping", actionid="p2")  # names are case-insensitive
    assert (await client.frame())["ActionID"] == "p2"
    await client.send(Action="FrobnicateAll", ActionID="u1")
    assert await client.frame() == {
        "Response": "Error",
        "ActionID": "u1",
        "Message": "Invalid/unknown command",
    }
    await client.send(Action="Setvar", ActionID="s1", Variable="X", Value="1")
    assert (await client.frame())["Response"] == "Success"
    assert [a.get("Action", a.get("action")) for a in sim.actions] == [
        "Login",
        "Ping",
        "ping",
        "FrobnicateAll",
        "Setvar",
    ]


async def test_logoff_says_goodbye_and_closes(sim: AmiSimulator, client: Client) -> None:
    await client.send(Action="Logoff", ActionID="bye")
    assert await client.frame() == {
        "Response": "Goodbye",
        "ActionID": "bye",
        "Message": "Thanks for all the fish.",
    }
    assert await client.closed()
    await asyncio.sleep(0.01)
    assert sim.connections == 0


async def core_show_channels(client: Client, action_id: str) -> tuple[list[Frame], Frame]:
    await client.send(Action="CoreShowChannels", ActionID=action_id)
    start = await client.frame()
    assert start == {
        "Response": "Success",
        "ActionID": action_id,
        "EventList": "start",
        "Message": "Channels will follow",
    }
    frames = await client.until("CoreShowChannelsComplete")
    assert all(f["ActionID"] == action_id for f in frames)
    return frames[:-1], frames[-1]


async def test_core_show_channels_mid_replay_and_after(sim: AmiSimulator, client: Client) -> None:
    frames = transcript("sip_inbound_answered")
    cut = next(i for i, f in enumerate(frames) if f["Event"] == "BridgeLeave")  # both bridged
    await sim.play(frames[:cut])
    await client.frames(cut)
    alive: dict[str, str] = {}  # worked out here independently: Uniqueid -> Channel
    for frame in frames[:cut]:
        if frame["Event"] == "Newchannel":
            alive[frame["Uniqueid"]] = frame["Channel"]
        elif frame["Event"] == "Hangup":
            del alive[frame["Uniqueid"]]
    assert len(alive) == 3  # the caller's two Local halves and SIP/101

    listed, complete = await core_show_channels(client, "c1")
    assert complete["EventList"] == "Complete"
    assert complete["ListItems"] == str(len(alive))
    assert {f["Uniqueid"]: f["Channel"] for f in listed} == alive
    assert all(f["Event"] == "CoreShowChannel" for f in listed)
    caller = next(f for f in listed if f["Channel"].endswith(";1"))
    bridge = next(f["BridgeUniqueid"] for f in frames[:cut] if f["Event"] == "BridgeEnter")
    assert caller["CallerIDName"] == "Мария Сидорова"
    assert caller["CallerIDNum"] == "+78125550101"
    assert caller["ChannelStateDesc"] == "Up"
    assert caller["BridgeId"] == bridge
    assert caller["Linkedid"] == caller["Uniqueid"]
    assert re.fullmatch(r"\d\d:\d\d:\d\d", caller["Duration"])
    expected_fields = {
        "Event", "ActionID", "Channel", "ChannelState", "ChannelStateDesc", "CallerIDNum",
        "CallerIDName", "ConnectedLineNum", "ConnectedLineName", "Language", "AccountCode",
        "Context", "Exten", "Priority", "Uniqueid", "Linkedid", "Application",
        "ApplicationData", "Duration", "BridgeId",
    }  # fmt: skip
    assert set(caller) == expected_fields
    phone = next(f for f in listed if f["Channel"].startswith("SIP/101-"))
    assert phone["ConnectedLineName"] == "Мария Сидорова"
    assert phone["ChannelStateDesc"] == "Up"

    await sim.play(frames[cut:])
    await client.frames(len(frames) - cut)
    listed, complete = await core_show_channels(client, "c2")
    assert listed == []
    assert complete["ListItems"] == "0"
    assert sim.channels == {}


async def test_device_and_extension_state_lists(sim: AmiSimulator, client: Client) -> None:
    frames = transcript("sip_ringgroup_answered")
    await sim.play(frames)
    await client.frames(len(frames))
    assert sim.device_states == {
        "Local/20@callers": "NOT_INUSE",
        "SIP/101": "NOT_INUSE",
        "SIP/102": "NOT_INUSE",
    }
    await client.send(Action="DeviceStateList", ActionID="d1")
    start = await client.frame()
    assert start["Message"] == "Device State Changes will follow"
    assert (start["Response"], start["EventList"], start["ActionID"]) == ("Success", "start", "d1")
    got = await client.until("DeviceStateListComplete")
    assert {f["Device"]: f["State"] for f in got[:-1]} == sim.device_states
    assert all(f["Event"] == "DeviceStateChange" and f["ActionID"] == "d1" for f in got[:-1])
    assert (got[-1]["EventList"], got[-1]["ListItems"]) == ("Complete", "3")

    sim.device_states["SIP/102"] = "RINGING"
    await client.send(Action="ExtensionStateList", ActionID="e1")
    assert (await client.frame())["EventList"] == "start"
    got = await client.until("ExtensionStateListComplete")
    assert got[:-1] == [
        {"Event": "ExtensionStatus", "ActionID": "e1", "Exten": "101", "Context": "internal",
         "Hint": "SIP/101", "Status": "0", "StatusText": "Idle"},
        {"Event": "ExtensionStatus", "ActionID": "e1", "Exten": "102", "Context": "internal",
         "Hint": "SIP/102", "Status": "8", "StatusText": "Ringing"},
    ]  # fmt: skip
    assert got[-1]["ListItems"] == "2"


async def test_originate_is_queued_then_answered(sim: AmiSimulator, client: Client) -> None:
    await client.send(
        Action="Originate",
        ActionID="c2d-1",
        Channel="SIP/101",
        Context="internal",
        Exten="88125550107",
        Priority="1",
        CallerID='"CRM click-to-dial" <88125550107>',
        Async="true",
    )
    assert await client.frame() == {
        "Response": "Success",
        "ActionID": "c2d-1",
        "Message": "Originate successfully queued",
    }
    result = await client.frame()
    assert result["Event"] == "OriginateResponse"
    assert result["ActionID"] == "c2d-1"
    assert result["Response"] == "Success"
    assert (result["Channel"], result["Context"], result["Exten"]) == (
        "SIP/101",
        "internal",
        "88125550107",
    )
    assert result["Reason"] == "4"
    assert UNIQUE_ID.match(result["Uniqueid"])
    assert (result["CallerIDNum"], result["CallerIDName"]) == ("88125550107", "CRM click-to-dial")
    assert sim.actions[-1]["Action"] == "Originate"
    assert sim.actions[-1]["Exten"] == "88125550107"

    sim.originate_result = "Failure"
    await client.send(Action="Originate", ActionID="c2d-2", Channel="SIP/102", Exten="1")
    assert (await client.frame())["Message"] == "Originate successfully queued"
    failed = await client.frame()
    assert (failed["Event"], failed["ActionID"], failed["Response"]) == (
        "OriginateResponse",
        "c2d-2",
        "Failure",
    )
    assert failed["Uniqueid"] == "<null>"
    assert failed["Reason"] != "4"


async def test_chunked_delivery_reassembles_exactly() -> None:
    sim = AmiSimulator(chunking=random.Random(7), max_chunk=16)
    await sim.start()
    try:
        connection = await Client.connect(sim)
        assert (await connection.login())["Response"] == "Success"
        assert (await connection.frame())["Event"] == "FullyBooted"
        await sim.wait_for_client()
        frames = transcript("sip_inbound_answered")
        start = len(connection.reads)
        player = asyncio.create_task(sim.play(frames))
        received = await connection.frames(len(frames))
        await player
        assert received == frames
        assert any(f.get("CallerIDName") == "Мария Сидорова" for f in received)

        # the pieces really arrived apart: many reads, some ending inside a frame and
        # some inside a multi-byte UTF-8 character
        reads = connection.reads[start:]
        assert len(reads) > len(frames)
        assert any(not r.endswith(b"\r\n\r\n") for r in reads)
        assert any(r[-1] & 0xC0 == 0xC0 or r[0] & 0xC0 == 0x80 for r in reads)
        await connection.close()
    finally:
        await sim.stop()


async def test_play_reaches_every_client_and_survives_one_leaving(sim: AmiSimulator) -> None:
    first, second = await Client.connect(sim), await Client.connect(sim)
    for connection in (first, second):
        await connection.login()
        await connection.frame()
    for _ in range(100):
        if sim.connections == 2:
            break
        await asyncio.sleep(0.01)
    assert sim.connections == 2
    frames = transcript("sip_internal_call")
    await sim.play(frames[:10])
    assert await first.frames(10) == frames[:10]
    assert await second.frames(10) == frames[:10]
    second.writer.transport.abort()
    await sim.play(frames[10:], delay=0.001)  # no error although one client went away
    assert await first.frames(len(frames) - 10) == frames[10:]
    assert sim.connections == 1
    await first.close()


async def test_drop_clients_closes_them_and_they_can_come_back(sim: AmiSimulator) -> None:
    connections = [await Client.connect(sim) for _ in range(2)]
    for connection in connections:
        await connection.login()
        await connection.frame()
    await sim.wait_for_client()
    sim.drop_clients()
    assert sim.connections == 0
    for connection in connections:
        assert await connection.closed()
        await connection.close()
    await sim.play(transcript("sip_inbound_missed")[:5])  # nobody listening: no error
    again = await Client.connect(sim)
    assert (await again.login())["Response"] == "Success"
    await sim.wait_for_client(timeout=1)
    assert sim.connections == 1
    await again.close()


# --- fresh identities ---------------------------------------------------------------------


def id_values(frames: list[Frame]) -> set[str]:
    return {
        value
        for frame in frames
        for key, value in frame.items()
        if re.search(r"(niqueid|inkedid)$", key, re.I) and UNIQUE_ID.match(value)
    }


def test_refresh_ids_keeps_structure_with_new_ids() -> None:
    frames = transcript("sip_blind_transfer_refer")
    one = refresh_ids(frames, seq=1)
    two = refresh_ids(frames, seq=2)
    for copy in (one, two):
        assert len(copy) == len(frames)
        assert [f["Event"] for f in copy] == [f["Event"] for f in frames]
        assert [list(f) for f in copy] == [list(f) for f in frames]
        assert all(UNIQUE_ID.match(v) for v in id_values(copy))
    old, ids1, ids2 = id_values(frames), id_values(one), id_values(two)
    assert len(ids1) == len(ids2) == len(old)
    assert not ids1 & ids2 and not ids1 & old and not ids2 & old
    assert refresh_ids(frames, seq=1) == one  # deterministic
    assert frames == transcript("sip_blind_transfer_refer")  # the input is untouched

    # every id key is mapped by one function: same old id -> same new id, everywhere
    mapping: dict[str, str] = {}
    for before, after in zip(frames, one, strict=True):
        for key, value in before.items():
            if re.search(r"(niqueid|inkedid)$", key, re.I) and UNIQUE_ID.match(value):
                assert mapping.setdefault(value, after[key]) == after[key]
    assert len(set(mapping.values())) == len(mapping)
    # the whole call shares one Linkedid, before and after
    linked = {f["Linkedid"] for f in one if "Linkedid" in f}
    assert linked == {mapping[v] for v in {f["Linkedid"] for f in frames if "Linkedid" in f}}
    assert len(linked) == 1
    transfer = next(f for f in one if f["Event"] == "BlindTransfer")
    assert transfer["TransfererLinkedid"] == transfer["TransfereeLinkedid"] == linked.pop()


def test_refresh_ids_remaps_channel_names_consistently() -> None:
    frames = transcript("sip_blind_transfer_refer")
    fresh = refresh_ids(frames, seq=5)
    names: dict[str, str] = {}
    for before, after in zip(frames, fresh, strict=True):
        for key in before:
            if key.endswith("Channel") and before[key] not in ("", "none"):
                assert names.setdefault(before[key], after[key]) == after[key]
    assert len(set(names.values())) == len(names)
    shape = re.compile(r"^(\w+/[^-]+(?:-[^-]+)*?)-([0-9a-f]{8})(;[12])?$")
    for old, new in names.items():
        assert old != new
        old_match, new_match = shape.match(old), shape.match(new)
        assert old_match and new_match
        assert old_match[1] == new_match[1] and old_match[3] == new_match[3]
    assert {"SIP/101", "SIP/102", "Local/25@callers"} <= {
        n.split("-")[0].split(";")[0] for n in names
    }
    transfer = next(f for f in fresh if f["Event"] == "BlindTransfer")
    assert transfer["TransfererChannel"] == names["SIP/101-0000000e"]
    assert transfer["TransfereeChannel"] == names["Local/25@callers-00000009;1"]
    # device names have no suffix and stay as they are
    assert {f["Device"] for f in fresh if "Device" in f} == {
        f["Device"] for f in frames if "Device" in f
    }
    # old channel names survive nowhere, not even inside other values (CEL Peer, Cdr)
    text = "\n".join(v for f in fresh for v in f.values())
    assert not any(old in text for old in names)
    # bridges get fresh UUIDs, consistently
    old_bridges = {f["BridgeUniqueid"] for f in frames if "BridgeUniqueid" in f}
    new_bridges = {f["BridgeUniqueid"] for f in fresh if "BridgeUniqueid" in f}
    assert len(new_bridges) == len(old_bridges) and not new_bridges & old_bridges
    assert all(re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", b) for b in new_bridges)


def test_refresh_ids_rewrites_file_names_and_numbers() -> None:
    frames = transcript("sip_inbound_answered")
    fresh = refresh_ids(frames, seq=3, number_map={"+78125550101": "+78125559999"})
    caller = next(f for f in fresh if f["Event"] == "Newchannel")
    new_id = caller["Uniqueid"]
    assert new_id != "1795362636.6"
    old_file = next(f["Value"] for f in frames if f.get("Variable") == "MIXMONITOR_FILENAME")
    assert old_file.endswith("/1795362636.6.wav")
    files = {f["Value"] for f in fresh if f.get("Variable") == "MIXMONITOR_FILENAME"}
    assert files == {old_file.replace("1795362636.6", new_id)}
    text = "\n".join(v for f in fresh for v in f.values())
    assert "+78125550101" not in text
    assert "1795362636.6" not in text
    named = [f for f in fresh if f.get("CallerIDName") == "Мария Сидорова"]
    assert named and all(f["CallerIDNum"] == "+78125559999" for f in named)

    fax = refresh_ids(transcript("fax_receive"), seq=4)
    received = next(f for f in fax if f["Event"] == "ReceiveFAX")
    assert received["FileName"].endswith(f"/fax/{received['Uniqueid']}.tif")

    # a number inside a Local channel's resource, and as Exten, is replaced too
    c2d = refresh_ids(transcript("sip_click_to_dial"), seq=1, number_map={"88125550107": "555"})
    text = "\n".join(v for f in c2d for v in f.values())
    assert "88125550107" not in text
    assert any(f.get("Channel", "").startswith("Local/555@remote-") for f in c2d)
    assert any(f.get("Exten") == "555" for f in c2d)

    # each value is rewritten once: a map that swaps two numbers swaps them
    swap = {"+78125550101": "88125550102", "88125550102": "+78125550101"}
    call = [
        {
            "Event": "Newchannel",
            "CallerIDNum": "+78125550101",
            "Exten": "88125550102",
            "Channel": "Local/88125550102@remote-00000001;1",
            "CallerID": "<+78125550101>",
        }
    ]
    assert refresh_ids(call, seq=0, number_map=swap) == [
        {"Event": "Newchannel", "CallerIDNum": "88125550102", "Exten": "+78125550101",
         "Channel": "Local/+78125550101@remote-00000001;1", "CallerID": "<88125550102>"}
    ]  # fmt: skip


def test_refresh_ids_is_fast() -> None:
    frames = [
        f for name in ("sip_blind_transfer_refer", "queue_answered") for f in transcript(name)
    ]
    frames = (frames * 3)[:1000]
    best = min(_timed(lambda s=seq: refresh_ids(frames, seq=s)) for seq in range(3))
    assert best < 0.1


def _timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


async def test_refreshed_replays_do_not_collide_in_the_channel_table(sim: AmiSimulator) -> None:
    frames = transcript("sip_inbound_answered")
    cut = next(i for i, f in enumerate(frames) if f["Event"] == "BridgeEnter")
    await sim.play(refresh_ids(frames[:cut], seq=1))
    await sim.play(refresh_ids(frames[:cut], seq=2))
    assert len(sim.channels) == 6
    assert len({c["Channel"] for c in sim.channels.values()}) == 6


@pytest.mark.skipif(not SHARED_FIXTURES.is_dir(), reason="../shared is not beside this clone")
def test_shipped_transcripts_are_the_recorded_ones() -> None:
    shipped = {p.name: p.read_bytes() for p in FIXTURES.glob("*.ami")}
    recorded = {p.name: p.read_bytes() for p in SHARED_FIXTURES.glob("*.ami")}
    assert shipped == recorded and len(shipped) == 11


async def test_an_originate_can_play_a_whole_call_for_the_phone_and_number_asked(
    sim: AmiSimulator, client: Client
) -> None:
    """The demo's click-to-dial: the recorded call (phone 101), as phone 102 asked for it."""
    sim.originate_call = transcript("sip_click_to_dial")
    await client.send(
        Action="Originate", ActionID="o1", Channel="SIP/102", Context="internal",
        Exten="84957770133", Priority="1", Async="true",
    )  # fmt: skip
    frames: list[Frame] = []
    while not (frames and frames[-1].get("Event") == "Hangup"):  # as paced as recorded
        frames.append(await client.frame(within=20))
    [answer] = [f for f in frames if f.get("Event") == "OriginateResponse"]
    assert (answer["ActionID"], answer["Response"]) == ("o1", "Success")
    assert answer["Exten"] == "84957770133"
    dialled = [f for f in frames if f.get("Event") == "DialBegin"]
    assert dialled[0]["DestChannel"].startswith("SIP/102-")
    assert not any("SIP/101-" in f.get("Channel", "") for f in frames)
