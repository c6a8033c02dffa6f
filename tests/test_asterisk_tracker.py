"""The call tracker against the real Asterisk 20 transcripts and the cases a real office
has that the transcripts do not show."""

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lab import EXPECTED, FIXTURES, LAB_INBOUND_CONTEXTS, LAB_TRUNKS, check_call

from cti.domain import Direction, LegResult, LineState, Outcome
from cti.text import text_problem
from pbx_adapters.asterisk import tracker as tracker_module
from pbx_adapters.asterisk.channels import ChannelMap
from pbx_adapters.asterisk.frames import AmiParser
from pbx_adapters.asterisk.tracker import CallTracker

START = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def tracker() -> CallTracker:
    return CallTracker(
        "lab",
        ChannelMap(trunk_patterns=LAB_TRUNKS),
        region="RU",
        inbound_contexts=LAB_INBOUND_CONTEXTS,
    )


def frames_of(name: str) -> list[dict]:
    return AmiParser().feed((FIXTURES / f"{name}.ami").read_bytes())


def run(t: CallTracker, frames: list[dict]) -> tuple[dict, list]:
    """Feed frames 100 ms apart; returns the calls (latest state by id) and the events."""
    calls, events = {}, []
    now = START
    for frame in frames:
        now += timedelta(milliseconds=100)
        events += t.feed(frame, now)
        for call in t.take_changed():
            calls[call.id] = call.to_dict()
    return calls, events


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_transcript_comes_out_as_the_readme_says(name: str) -> None:
    t = tracker()
    calls, events = run(t, frames_of(name))
    assert t.problems == 0
    assert len(calls) == 1, calls.keys()
    [call] = calls.values()
    check_call(name, call)
    assert t.calls == {}  # nothing left hanging
    rung = [e.extension for e in events if e.type == "call.ringing"]
    assert rung == EXPECTED[name]["rung"]  # one pop per extension, as it starts ringing
    [ended] = [e for e in events if e.type == "call.ended"]
    assert ended.outcome == EXPECTED[name]["outcome"]
    assert set(t.lines.values()) <= {LineState.IDLE}  # every line is free again


def test_ring_group_pop_closes_for_the_colleague_and_is_not_their_missed_call() -> None:
    calls, events = run(tracker(), frames_of("sip_ringgroup_answered"))
    [call] = calls.values()
    results = {leg["extension"]: leg["result"] for leg in call["legs"]}
    assert results == {"101": LegResult.CANCELLED, "102": LegResult.ANSWERED}
    kinds = [(e.type, getattr(e, "extension", None)) for e in events if e.type.startswith("call.")]
    assert kinds == [
        ("call.ringing", "101"),
        ("call.ringing", "102"),
        ("call.answered", "102"),
        ("call.ended", None),
    ]
    assert set(events[-1].extensions()) == {"101", "102"}  # 101's pop is told to close


def test_ringing_pop_carries_the_caller() -> None:
    _, events = run(tracker(), frames_of("sip_inbound_answered"))
    [ringing] = [e for e in events if e.type == "call.ringing"]
    assert ringing.direction is Direction.INBOUND
    assert (ringing.external_number, ringing.external_name) == ("+78125550101", "Мария Сидорова")


def test_times_wait_and_talk() -> None:
    calls, _ = run(tracker(), frames_of("sip_inbound_answered"))
    [call] = calls.values()
    assert call["wait_seconds"] > 0 and call["talk_seconds"] > 0
    started = datetime.fromisoformat(call["started_at"])
    answered = datetime.fromisoformat(call["answered_at"])
    assert call["wait_seconds"] == pytest.approx((answered - started).total_seconds())


def test_the_same_stream_twice_is_logged_once() -> None:
    t = tracker()
    frames = frames_of("sip_inbound_answered")
    run(t, frames)
    calls, events = run(t, frames)
    assert calls == {} and [e for e in events if e.type.startswith("call.")] == []


def test_chunked_input_with_split_utf8_gives_the_same_calls() -> None:
    data = (FIXTURES / "sip_inbound_missed.ami").read_bytes()
    whole, _ = run(tracker(), AmiParser().feed(data))
    rng = random.Random(7)
    parser, frames, i = AmiParser(), [], 0
    while i < len(data):
        n = rng.randint(1, 9)
        frames += parser.feed(data[i : i + n])
        i += n
    chunked, _ = run(tracker(), frames)
    assert chunked == whole
    assert next(iter(chunked.values()))["external_name"] == "ООО Ромашка"


def test_two_calls_at_once() -> None:
    a, b = frames_of("sip_inbound_answered"), frames_of("sip_queue_answered")
    mixed = [f for pair in zip(a, b, strict=False) for f in pair]
    mixed += a[len(b) :] + b[len(a) :]
    t = tracker()
    calls, _ = run(t, mixed)
    by_number = {c["external_number"]: c for c in calls.values()}
    check_call("sip_inbound_answered", by_number["+78125550101"])
    check_call("sip_queue_answered", by_number["+78125550105"])


# -- cases the transcripts do not show, written as Asterisk 20 reports them -----------


def chan(name: str, uid: str, linkedid: str, state: str = "Down", **extra: str) -> dict:
    return {
        "Channel": name,
        "Uniqueid": uid,
        "Linkedid": linkedid,
        "ChannelStateDesc": state,
        **extra,
    }


def ev(event: str, **fields: str) -> dict:
    return {"Event": event, **fields}


TRUNK = "PJSIP/provider-00000001"


def inbound_start(linkedid: str = "100.1", number: str = "+78127000001") -> list[dict]:
    caller = chan(
        TRUNK,
        linkedid,
        linkedid,
        "Ring",
        CallerIDNum=number,
        CallerIDName="Клиент",
        Context="inbound",
        Exten="4950000",
    )
    return [ev("Newchannel", **caller)]


def dial(src: dict | None, dest_name: str, dest_uid: str, linkedid: str) -> list[dict]:
    fields = {"DestChannel": dest_name, "DestUniqueid": dest_uid, "DestLinkedid": linkedid}
    if src:
        fields.update(src)
    return [
        ev("Newchannel", **chan(dest_name, dest_uid, linkedid)),
        ev("DialBegin", **fields),
        ev("Newstate", **chan(dest_name, dest_uid, linkedid, "Ringing")),
    ]


def dial_end(src: dict, dest_name: str, dest_uid: str, linkedid: str, status: str) -> dict:
    return ev(
        "DialEnd",
        **src,
        DestChannel=dest_name,
        DestUniqueid=dest_uid,
        DestLinkedid=linkedid,
        DialStatus=status,
    )


def hangup(name: str, uid: str, linkedid: str, cause: str = "16") -> dict:
    return ev("Hangup", **chan(name, uid, linkedid), Cause=cause)


def test_caller_hangs_up_while_ringing_is_abandoned_and_missed() -> None:
    src = chan(TRUNK, "100.1", "100.1", "Ring")
    frames = [
        *inbound_start(),
        *dial(src, "PJSIP/101-0000000a", "100.2", "100.1"),
        dial_end(src, "PJSIP/101-0000000a", "100.2", "100.1", "CANCEL"),
        hangup("PJSIP/101-0000000a", "100.2", "100.1", "16"),
        hangup(TRUNK, "100.1", "100.1"),
    ]
    calls, _ = run(tracker(), frames)
    [call] = calls.values()
    assert (call["outcome"], call["missed"], call["did"]) == ("abandoned", True, "4950000")
    assert call["legs"][0]["result"] == "cancelled"


def test_caller_gives_up_in_the_queue() -> None:
    src = chan(TRUNK, "100.1", "100.1", "Up")
    frames = [
        *inbound_start(),
        ev("QueueCallerJoin", **src, Queue="support", Position="1"),
        ev(
            "QueueCallerAbandon",
            **src,
            Queue="support",
            Position="1",
            OriginalPosition="1",
            HoldTime="42",
        ),
        hangup(TRUNK, "100.1", "100.1"),
    ]
    calls, events = run(tracker(), frames)
    [call] = calls.values()
    assert (call["queue"], call["outcome"], call["missed"]) == ("support", "abandoned", True)
    assert call["legs"] == [] and "call.ringing" not in [e.type for e in events]


def test_attended_transfer_moves_the_target_into_the_callers_call() -> None:
    caller = chan(TRUNK, "100.1", "100.1", "Up")
    anna1 = chan("PJSIP/101-0000000a", "100.2", "100.1", "Up")
    frames = [
        *inbound_start(),
        *dial(caller, "PJSIP/101-0000000a", "100.2", "100.1"),
        dial_end(caller, "PJSIP/101-0000000a", "100.2", "100.1", "ANSWER"),
        # Anna puts the caller on hold and calls Boris: a call of its own.
        ev(
            "Newchannel",
            **chan(
                "PJSIP/101-0000000b",
                "200.1",
                "200.1",
                "Ring",
                CallerIDNum="101",
                Context="from-internal",
                Exten="102",
            ),
        ),
    ]
    anna2 = chan("PJSIP/101-0000000b", "200.1", "200.1", "Ring")
    frames += [
        *dial(anna2, "PJSIP/102-0000000c", "200.2", "200.1"),
        dial_end(anna2, "PJSIP/102-0000000c", "200.2", "200.1", "ANSWER"),
        ev(
            "AttendedTransfer",
            Result="Success",
            OrigTransfererChannel=anna1["Channel"],
            OrigTransfererUniqueid="100.2",
            SecondTransfererChannel=anna2["Channel"],
            SecondTransfererUniqueid="200.1",
            TransfereeChannel=TRUNK,
            TransfereeUniqueid="100.1",
            TransferTargetChannel="PJSIP/102-0000000c",
            TransferTargetUniqueid="200.2",
            DestType="Bridge",
            IsExternal="No",
        ),
        hangup("PJSIP/101-0000000a", "100.2", "100.1"),
        hangup("PJSIP/101-0000000b", "200.1", "200.1"),
        hangup("PJSIP/102-0000000c", "200.2", "200.1"),
        hangup(TRUNK, "100.1", "100.1"),
    ]
    t = tracker()
    calls, events = run(t, frames)
    inbound = calls["lab:100.1"]
    assert inbound["transfers"][0]["kind"] == "attended"
    assert (inbound["transfers"][0]["from"], inbound["transfers"][0]["to"]) == ("101", "102")
    assert inbound["answered_by"] == "102" and inbound["outcome"] == "answered"
    assert inbound["ended_at"] is not None
    consult = calls["lab:200.1"]
    assert (consult["direction"], consult["caller_extension"]) == ("internal", "101")
    assert consult["ended_at"] is not None
    assert t.calls == {}
    assert "call.transferred" in [e.type for e in events]


def test_pickup_by_a_colleague() -> None:
    src = chan(TRUNK, "100.1", "100.1", "Up")
    frames = [
        *inbound_start(),
        *dial(src, "PJSIP/101-0000000a", "100.2", "100.1"),
        ev("Newchannel", **chan("PJSIP/103-0000000d", "300.1", "300.1", "Ring", Exten="*8")),
        ev(
            "Pickup",
            **chan("PJSIP/103-0000000d", "300.1", "300.1", "Up"),
            TargetChannel="PJSIP/101-0000000a",
            TargetUniqueid="100.2",
        ),
        hangup("PJSIP/101-0000000a", "100.2", "100.1", "26"),
        hangup("PJSIP/103-0000000d", "300.1", "300.1"),
        hangup(TRUNK, "100.1", "100.1"),
    ]
    t = tracker()
    calls, _ = run(t, frames)
    call = calls["lab:100.1"]
    assert call["answered_by"] == "103" and call["outcome"] == "answered"
    assert [(leg["extension"], leg["result"]) for leg in call["legs"]] == [
        ("101", "picked_up"),
        ("103", "answered"),
    ]
    assert t.calls == {}


def test_busy_operator_and_rejected_call() -> None:
    src = chan(TRUNK, "100.1", "100.1", "Up")
    frames = [
        *inbound_start(),
        *dial(src, "PJSIP/101-0000000a", "100.2", "100.1"),
        hangup("PJSIP/101-0000000a", "100.2", "100.1", "17"),
        hangup(TRUNK, "100.1", "100.1"),
    ]
    calls, _ = run(tracker(), frames)
    [call] = calls.values()
    assert (call["outcome"], call["legs"][0]["result"]) == ("busy", "busy")


def test_operator_dials_out_and_nobody_answers() -> None:
    anna = chan(
        "PJSIP/101-0000000a",
        "400.1",
        "400.1",
        "Ring",
        CallerIDNum="101",
        Context="from-internal",
        Exten="88127000002",
    )
    frames = [
        ev("Newchannel", **anna),
        *dial(anna, "PJSIP/provider-0000000f", "400.2", "400.1"),
        dial_end(anna, "PJSIP/provider-0000000f", "400.2", "400.1", "NOANSWER"),
        hangup("PJSIP/provider-0000000f", "400.2", "400.1"),
        hangup("PJSIP/101-0000000a", "400.1", "400.1"),
    ]
    calls, events = run(tracker(), frames)
    [call] = calls.values()
    assert (call["direction"], call["external_number"], call["caller_extension"]) == (
        "outbound",
        "+78127000002",
        "101",
    )
    assert (call["outcome"], call["missed"]) == ("no_answer", False)
    assert [e.state for e in events if e.type == "line.state"] == [LineState.IN_USE, LineState.IDLE]


def test_a_transferred_call_says_who_took_it_first_and_who_had_it_last() -> None:
    calls, _ = run(tracker(), frames_of("sip_blind_transfer_refer"))
    [call] = calls.values()
    assert (call["first_answered_by"], call["answered_by"]) == ("101", "102")
    [untransferred] = run(tracker(), frames_of("sip_inbound_answered"))[0].values()
    assert untransferred["first_answered_by"] == untransferred["answered_by"] == "101"


def test_a_blind_transfer_reported_after_its_target_rings_is_one_transfer() -> None:
    """Asterisk publishes a REFER's BlindTransfer after the transfer is done; the caller's
    new Dial to the target may come out first. Either way it is one transfer."""
    frames = frames_of("sip_blind_transfer_refer")
    blind = frames.pop(next(i for i, f in enumerate(frames) if f.get("Event") == "BlindTransfer"))
    dials = [i for i, f in enumerate(frames) if f.get("Event") == "DialBegin"]
    frames.insert(dials[-1] + 1, blind)  # after the Dial to 102
    t = tracker()
    calls, events = run(t, frames)
    [call] = calls.values()
    assert [(x["kind"], x["from"], x["to"]) for x in call["transfers"]] == [("blind", "101", "102")]
    assert len([e for e in events if e.type == "call.transferred"]) == 1
    assert (call["first_answered_by"], call["answered_by"]) == ("101", "102")


def test_a_received_fax_talks_while_it_transmits() -> None:
    """Issue 15, D6: the transmission counted as waiting (wait 32.8 s, talk 0.02 s)."""
    frames = frames_of("fax_receive")
    calls, _ = run(tracker(), frames)
    [call] = calls.values()
    began = next(i for i, f in enumerate(frames) if f.get("Application") == "ReceiveFAX")
    assert call["answered_at"] == (START + timedelta(milliseconds=100 * (began + 1))).isoformat()
    assert call["talk_seconds"] > call["wait_seconds"]
    assert (call["fax"]["pages"], call["fax"]["status"]) == (2, "received")


def test_resync_closes_calls_that_ended_while_disconnected() -> None:
    t = tracker()
    frames = frames_of("sip_inbound_answered")
    cut = next(i for i, f in enumerate(frames) if f.get("Event") == "BridgeEnter")
    run(t, frames[:cut])
    assert len(t.calls) == 1
    events = t.resync([], START + timedelta(minutes=5))
    [call] = t.take_changed()
    assert call.ended_while_disconnected and call.outcome is Outcome.ANSWERED
    assert [e.type for e in events if e.type.startswith("call.")] == ["call.ended"]
    assert set(t.lines.values()) == {LineState.IDLE}
    # Its end is unknown (issue 15, D5): not the reconnect, and no talk time made up.
    assert call.end_unknown and call.talk_seconds is None
    assert call.ended_at == t.last_frame_at < START + timedelta(minutes=1)  # the last we heard


def test_a_ringing_call_whose_end_was_not_seen_is_not_called_missed() -> None:
    """Issue 15, D1: the link went silent while the call rang; whether someone answered
    is unknown, so it is neither missed nor abandoned, and gets no callback task."""
    t = tracker()
    frames = frames_of("sip_inbound_missed")
    dials = [i for i, f in enumerate(frames) if f.get("Event") == "DialBegin"]
    run(t, frames[: dials[1] + 1])  # the caller's Local leg dials, then 101 rings
    [ringing] = t.active_calls()
    assert ringing.legs and ringing.answered_at is None
    [ended] = [e for e in t.resync([], START + timedelta(minutes=5)) if e.type == "call.ended"]
    [call] = t.take_changed()
    assert (call.outcome, call.missed, ended.missed) == (Outcome.UNKNOWN, False, False)
    assert call.end_unknown and (call.wait_seconds, call.talk_seconds) == (None, None)
    assert call.to_dict()["outcome"] == "unknown"


def test_resync_adopts_live_calls_without_a_second_pop() -> None:
    t = tracker()
    live = [
        {
            "Event": "CoreShowChannel",
            **chan(TRUNK, "500.1", "500.1", "Up", CallerIDNum="+78127000003"),
        },
        {"Event": "CoreShowChannel", **chan("PJSIP/102-0000000e", "500.2", "500.1", "Up")},
    ]
    events = t.resync(live, START)
    assert [e.type for e in events if e.type.startswith("call.")] == []
    [call] = t.active_calls()
    assert (call.direction, call.answered_by, call.external_number) == (
        Direction.INBOUND,
        "102",
        "+78127000003",
    )
    assert t.lines["102"] is LineState.IN_USE
    calls, _ = run(
        t, [hangup("PJSIP/102-0000000e", "500.2", "500.1"), hangup(TRUNK, "500.1", "500.1")]
    )
    assert calls["lab:500.1"]["outcome"] == "answered"


def test_resync_answers_a_phone_that_picked_up_while_the_link_was_down() -> None:
    """The link went down while 101 rang and came back with 101 talking: the PBX's list
    says the phone's channel is up, so the call was answered by 101, not abandoned."""
    t = tracker()
    src = chan(TRUNK, "520.1", "520.1", "Ring")
    run(t, [*inbound_start("520.1"), *dial(src, "PJSIP/101-00000010", "520.2", "520.1")])
    assert t.lines["101"] is LineState.RINGING
    live = [
        {"Event": "CoreShowChannel", **chan(TRUNK, "520.1", "520.1", "Up")},
        {"Event": "CoreShowChannel", **chan("PJSIP/101-00000010", "520.2", "520.1", "Up")},
    ]
    events = t.resync(live, START + timedelta(seconds=30))
    assert [(e.type, e.extension) for e in events if e.type.startswith("call.")] == [
        ("call.answered", "101")
    ]
    assert t.lines["101"] is LineState.IN_USE
    calls, _ = run(
        t, [hangup("PJSIP/101-00000010", "520.2", "520.1"), hangup(TRUNK, "520.1", "520.1")]
    )
    call = calls["lab:520.1"]
    assert (call["outcome"], call["answered_by"], call["missed"]) == ("answered", "101", False)


def test_resync_pops_a_phone_found_ringing_once() -> None:
    t = tracker()
    live = [  # the ringing phone listed before the call's trunk channel
        {"Event": "CoreShowChannel", **chan("PJSIP/102-0000000f", "510.2", "510.1", "Ringing")},
        {
            "Event": "CoreShowChannel",
            **chan(TRUNK, "510.1", "510.1", "Ring", CallerIDNum="+78127000004"),
        },
    ]
    [ringing] = [e for e in t.resync(live, START) if e.type.startswith("call.")]
    assert (ringing.type, ringing.extension, ringing.direction, ringing.external_number) == (
        "call.ringing",
        "102",
        Direction.INBOUND,
        "+78127000004",
    )
    assert t.lines["102"] is LineState.RINGING
    assert [e for e in t.resync(live, START) if e.type.startswith("call.")] == []


def test_restored_calls_from_storage_are_closed_when_the_pbx_no_longer_has_them() -> None:
    first = tracker()
    frames = frames_of("sip_queue_answered")
    run(first, frames[: len(frames) // 2])
    [in_progress] = first.active_calls()
    second = tracker()
    second.restore([in_progress])
    second.resync([], START + timedelta(hours=1))
    [closed] = second.take_changed()
    assert closed.id == in_progress.id and closed.ended_while_disconnected


def ringing_forever(n: int, extension: str | None = None) -> list[dict]:
    """The first two frames of ``n`` inbound calls that never end."""
    frames = []
    for i in range(n):
        trunk = chan(f"PJSIP/provider-{i:08x}", f"{i}.1", f"{i}.1", "Ring")
        phone = f"PJSIP/{extension or 100 + i % 50}-{i:08x}"
        frames += [
            ev("Newchannel", **trunk, CallerIDNum=f"+7812{i:07d}"),
            ev("DialBegin", **trunk, DestChannel=phone, DestUniqueid=f"{i}.2",
               DestLinkedid=f"{i}.1", DestChannelStateDesc="Down"),
        ]  # fmt: skip
    return frames


def test_calls_that_never_end_are_bounded_and_the_flood_is_logged(caplog) -> None:
    t = tracker()
    t.max_calls, t.max_channels = 100, 150
    _, events = run(t, ringing_forever(1000))
    assert len(t.calls) == 75 and len(t.channels) == 150  # two channels a call
    assert t.refused > 900
    assert [e.type for e in events].count("call.ringing") == 75
    warnings = [r for r in caplog.records if r.getMessage().startswith("too many open calls")]
    assert 1 < len(warnings) <= 4  # the 1st, 10th, 100th... refusal, not every one
    calls, _ = run(t, [hangup(f"PJSIP/provider-{i:08x}", f"{i}.1", f"{i}.1") for i in range(10)])
    run(t, [hangup(f"PJSIP/{100 + i % 50}-{i:08x}", f"{i}.2", f"{i}.1") for i in range(10)])
    calls, _ = run(t, ringing_forever(2000)[-2:])  # room again: a new call is followed
    assert [c["external_number"] for c in calls.values()] == ["+78120001999"]


def test_one_phone_with_thousands_of_channels_is_bounded_too() -> None:
    t = tracker()
    run(t, ringing_forever(3000, extension="101"))
    phone_channels = [c for c in t.channels.values() if c.extension == "101"]
    assert len(phone_channels) == tracker_module.MAX_CHANNELS_PER_EXTENSION
    assert t.refused == 3000 - tracker_module.MAX_CHANNELS_PER_EXTENSION


# -- fuzzing: nothing the PBX (or a broken network) sends may raise --------------------

FIELDS = [
    "Event",
    "Channel",
    "Uniqueid",
    "Linkedid",
    "DestChannel",
    "DestUniqueid",
    "DestLinkedid",
    "DialStatus",
    "ChannelStateDesc",
    "CallerIDNum",
    "Cause",
    "TransfereeUniqueid",
    "TransferTargetUniqueid",
    "TargetUniqueid",
    "Timestamp",
    "PagesTransferred",
    "Variable",
    "Value",
    "Device",
    "State",
    "Exten",
    "Status",
]
EVENTS = sorted(tracker()._handlers)
ALL_FRAMES = [f for name in EXPECTED for f in frames_of(name)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(FIELDS),
            st.one_of(
                st.sampled_from(EVENTS),
                st.text(max_size=12),
                st.sampled_from(["1.1", "1.2", "ANSWER", "Up", "17", "nan", "-1", ""]),
            ),
            max_size=8,
        ),
        max_size=40,
    )
)
def test_garbage_frames_never_raise(frames: list[dict]) -> None:
    t = tracker()
    for frame in frames:
        t.feed(frame, START)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False), st.integers(0, 3))
def test_shuffled_truncated_and_corrupted_streams_never_raise(
    rng: random.Random, mode: int
) -> None:
    frames = [dict(f) for f in rng.sample(ALL_FRAMES, min(len(ALL_FRAMES), 300))]
    if mode == 1:
        frames.sort(key=lambda f: f.get("Event", ""))
    if mode == 2:
        for frame in frames:
            if frame and rng.random() < 0.3:
                frame.pop(rng.choice(list(frame)))
    if mode == 3:
        frames = frames[: rng.randint(0, len(frames))]
    t = tracker()
    for frame in frames:
        t.feed(frame, START)
    t.resync([], START)
    assert t.calls == {}


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.integers(1, 64))
def test_parser_survives_any_bytes(data: bytes, chunk: int) -> None:
    parser = AmiParser(max_frame_bytes=512)
    for i in range(0, len(data), chunk):
        for frame in parser.feed(data[i : i + chunk]):
            assert all(isinstance(k, str) and isinstance(v, str) for k, v in frame.items())
            # Whatever came, what goes on is text every database and browser takes.
            assert all(text_problem(k + v) is None for k, v in frame.items())


def test_nul_goes_and_broken_utf8_becomes_a_replacement_character() -> None:
    [frame] = AmiParser().feed(
        b"Event: Newchannel\r\nCallerIDName: Ma\x00ria \xd0\r\nUniqueid: 1.1\r\n\r\n"
    )
    assert frame["CallerIDName"] == "Maria \ufffd"
