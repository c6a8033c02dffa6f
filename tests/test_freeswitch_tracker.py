"""The FreeSWITCH call tracker, sans-I/O: every recorded call comes out as its answer key
says, in both event formats and however the bytes are cut; what the recordings do not
show (attended transfer, REFER, an abandoned queue, recordings, a reconnect) from events
shaped like theirs."""

from datetime import UTC, datetime, timedelta

import pytest
from fs_lab import SCENARIOS, SHARED, SHIPPED, check_call, new_tracker
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cti.calls import Call
from cti.domain import LineState
from pbx_adapters.freeswitch.esl import EslClient, EventReceived
from pbx_adapters.freeswitch.simulator import load_transcript, refresh
from pbx_adapters.freeswitch.tracker import CallTracker

NOW = datetime(2026, 12, 2, tzinfo=UTC)


def run(tracker: CallTracker, events: list[dict]) -> tuple[dict[str, dict], list]:
    calls: dict[str, dict] = {}
    out: list = []
    for event in events:
        out += tracker.feed(event, NOW)
        for call in tracker.take_changed():
            calls[call.id] = call.to_dict()
    return calls, out


def recorded(name: str) -> list[dict]:
    return load_transcript(SHIPPED / f"{name}.json.esl.gz")


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_recorded_call_comes_out_as_the_answer_key_says(name) -> None:
    tracker = new_tracker()
    calls, events = run(tracker, recorded(name))
    [call] = calls.values()
    check_call(name, call)
    assert tracker.problems == 0 and tracker.calls == {} and not tracker.channels
    rung = [e.extension for e in events if e.type == "call.ringing"]
    assert sorted(rung) == sorted(leg["extension"] for leg in call["legs"])
    [ended] = [e for e in events if e.type == "call.ended"]
    assert (ended.outcome, ended.missed) == (call["outcome"], call["missed"])


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"needs {SHARED} (../shared beside the repo)")
@pytest.mark.parametrize("fmt", ["plain", "json"])
@pytest.mark.parametrize("name", SCENARIOS)
def test_the_raw_recorded_bytes_fed_one_byte_at_a_time(name, fmt) -> None:
    client = EslClient("ClueCon", ["event json ALL"])
    client.parser.events = new_tracker().events
    tracker = new_tracker()
    stream = (SHARED / f"{name}.{fmt}.esl").read_bytes()
    events = []
    view = memoryview(stream)
    for at in range(len(stream)):
        events += [
            o.event for o in client.receive(view[at : at + 1]) if isinstance(o, EventReceived)
        ]
    calls, _ = run(tracker, events)
    [call] = calls.values()
    check_call(name, call)


def test_times_are_the_switchs_own_and_the_waits_are_real() -> None:
    calls, _ = run(new_tracker(), recorded("inbound_answered"))
    [call] = calls.values()
    started = datetime.fromisoformat(call["started_at"])
    assert started.year == 2026 and started.month == 12 and started.day == 1
    assert 1 < call["wait_seconds"] < 10 and 2 < call["talk_seconds"] < 10


def test_a_replayed_stream_is_not_logged_twice() -> None:
    tracker = new_tracker()
    events = recorded("busy")
    first, _ = run(tracker, events)
    again, out = run(tracker, events)
    assert len(first) == 1 and again == {} and out == []


def test_line_states_follow_the_phones() -> None:
    tracker = new_tracker()
    _, events = run(tracker, recorded("ringgroup_answered_by_102"))
    lines = [(e.extension, e.state) for e in events if e.type == "line.state"]
    assert ("101", LineState.RINGING) in lines and ("102", LineState.IN_USE) in lines
    assert tracker.lines == {"101": LineState.IDLE, "102": LineState.IDLE}


def test_registrations_say_which_phones_are_unavailable() -> None:
    tracker = new_tracker()
    run(tracker, recorded("ringgroup_answered_by_102"))
    events = tracker.registrations({"102"}, NOW)
    assert [(e.extension, e.state) for e in events] == [("101", LineState.UNAVAILABLE)]
    gone = {"Event-Name": "CUSTOM", "Event-Subclass": "sofia::unregister", "from-user": "102"}
    back = {"Event-Name": "CUSTOM", "Event-Subclass": "sofia::register", "from-user": "101"}
    assert [(e.extension, e.state) for e in tracker.feed(gone, NOW) + tracker.feed(back, NOW)] == [
        ("102", LineState.UNAVAILABLE),
        ("101", LineState.IDLE),
    ]


def other_tenant(events: list[dict]) -> list[dict]:
    return [{**e, "variable_domain_name": "other.example"} for e in events]


def test_a_tenant_link_follows_only_its_domain() -> None:
    tracker = new_tracker(domains=["127.0.0.1"])
    mine = recorded("inbound_answered")
    calls, _ = run(tracker, [*other_tenant(refresh(recorded("busy"))), *mine])
    [call] = calls.values()
    check_call("inbound_answered", call)


# -- what the recordings do not show, from events shaped like theirs --------------------


def cut_at(events: list[dict], name: str, uuid_of: str | None = None) -> int:
    return next(
        i
        for i, e in enumerate(events)
        if e.get("Event-Name") == name and (uuid_of is None or uuid_of in e.get("Channel-Name", ""))
    )


def test_a_caller_who_hangs_up_while_ringing_abandoned_the_call() -> None:
    events = recorded("inbound_missed")
    end = cut_at(events, "CHANNEL_HANGUP")
    cancelled = [
        {**e, "Hangup-Cause": "ORIGINATOR_CANCEL"} if "Hangup-Cause" in e else e for e in events
    ]
    calls, _ = run(new_tracker(), cancelled[:end] + cancelled[end:])
    [call] = calls.values()
    assert (call["outcome"], call["missed"]) == ("abandoned", True)
    assert call["legs"][0]["result"] == "cancelled"


def test_a_caller_who_leaves_the_queue_abandoned_it() -> None:
    events = recorded("queue_answered")
    answer = next(
        i
        for i, e in enumerate(events)
        if e.get("Event-Name") == "CHANNEL_ANSWER" and e["Channel-Name"].startswith("sofia/")
    )
    # Up to the agent's answer, then the caller gives up: the queue cancels the agents.
    head = [e for e in events[:answer]]
    ends = []
    for e in events[answer:]:
        if e.get("Event-Name") in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE"):
            ends.append({**e, "Hangup-Cause": "ORIGINATOR_CANCEL"})
        elif e.get("CC-Action") == "member-queue-end":
            ends.append({**e, "CC-Cause": "Cancel", "CC-Cancel-Reason": "BREAK_OUT"})
    calls, _ = run(new_tracker(), head + ends)
    [call] = calls.values()
    assert call["queue"] == "support@default"
    assert (call["outcome"], call["missed"], call["answered_by"]) == ("abandoned", True, None)


def leg(uuid: str, name: str, event: str = "CHANNEL_CREATE", **fields: str) -> dict:
    return {"Event-Name": event, "Unique-ID": uuid, "Channel-Name": name, **fields}


def attended_transfer(result: str = "success") -> list[dict]:
    """An answered call (caller c, 101's leg p1), 101 consults 102 (leg p2, originated by
    att_xfer from p1), hangs up, and FreeSWITCH bridges 102 with the caller."""
    caller = {"Caller-Caller-ID-Number": "+78125550199", "Caller-Destination-Number": "4952000"}
    p1 = {"Call-Direction": "outbound", "variable_dialed_user": "101", "Other-Leg-Unique-ID": "c"}
    p2 = {"Call-Direction": "outbound", "variable_dialed_user": "102", "Other-Leg-Unique-ID": "p1"}
    return [
        leg(
            "c", "sofia/external/+78125550199@192.0.2.9", **caller, **{"Call-Direction": "inbound"}
        ),
        leg("p1", "sofia/internal/101@192.0.2.1", **p1),
        leg("p1", "sofia/internal/101@192.0.2.1", "CHANNEL_ANSWER", **p1),
        leg(
            "c",
            "sofia/external/+78125550199@192.0.2.9",
            "CHANNEL_BRIDGE",
            **{"Bridge-A-Unique-ID": "c", "Bridge-B-Unique-ID": "p1"},
        ),
        leg("p2", "sofia/internal/102@192.0.2.2", **p2),
        leg("p2", "sofia/internal/102@192.0.2.2", "CHANNEL_ANSWER", **p2),
        leg(
            "p1",
            "sofia/internal/101@192.0.2.1",
            "CHANNEL_BRIDGE",
            **{"Bridge-A-Unique-ID": "p1", "Bridge-B-Unique-ID": "p2"},
        ),
        leg(
            "p1",
            "sofia/internal/101@192.0.2.1",
            "CHANNEL_HANGUP_COMPLETE",
            **{"Hangup-Cause": "NORMAL_CLEARING"},
        ),
        leg(
            "p2",
            "sofia/internal/102@192.0.2.2",
            "CHANNEL_BRIDGE",
            **{
                "Bridge-A-Unique-ID": "p2",
                "Bridge-B-Unique-ID": "c",
                "variable_att_xfer_result": result,
            },
        ),
        leg(
            "p2",
            "sofia/internal/102@192.0.2.2",
            "CHANNEL_HANGUP_COMPLETE",
            **{"Hangup-Cause": "NORMAL_CLEARING"},
        ),
        leg(
            "c",
            "sofia/external/+78125550199@192.0.2.9",
            "CHANNEL_HANGUP_COMPLETE",
            **{"Hangup-Cause": "NORMAL_CLEARING"},
        ),
    ]


def test_an_attended_transfer_is_one_call_passed_from_101_to_102() -> None:
    calls, events = run(new_tracker(), attended_transfer())
    [call] = calls.values()
    assert (call["direction"], call["external_number"], call["did"]) == (
        "inbound",
        "+78125550199",
        "4952000",
    )
    assert [(t["kind"], t["from"], t["to"]) for t in call["transfers"]] == [
        ("attended", "101", "102")
    ]
    assert (call["first_answered_by"], call["answered_by"], call["outcome"]) == (
        "101",
        "102",
        "answered",
    )
    # Taking the consultation is not taking the call: 102 takes it at the transfer.
    answered = [e.extension for e in events if e.type == "call.answered"]
    assert answered == ["101", "102"]


def test_a_sip_refer_is_a_blind_transfer_from_the_phone_that_sent_it() -> None:
    events = recorded("blind_transfer")
    unbridge = cut_at(events, "CHANNEL_UNBRIDGE")
    phone = next(e for e in events if e.get("Channel-Name", "").startswith("sofia/internal/101"))
    refer = {
        "Event-Name": "CUSTOM",
        "Event-Subclass": "sofia::transferor",
        "Unique-ID": phone["Unique-ID"],
        "Channel-Name": phone["Channel-Name"],
        "variable_transfer_to": "blind:x",
    }
    calls, events_out = run(new_tracker(), [*events[:unbridge], refer, *events[unbridge:]])
    [call] = calls.values()
    assert [(t["kind"], t["from"], t["to"]) for t in call["transfers"]] == [("blind", "101", "102")]
    [moved] = [e for e in events_out if e.type == "call.transferred"]
    assert (moved.from_extension, moved.to_extension) == ("101", "102")


def test_record_start_attaches_the_file_to_its_call() -> None:
    events = recorded("inbound_answered")
    bridge = cut_at(events, "CHANNEL_BRIDGE")
    trunk = events[bridge]["Unique-ID"]
    path = f"/var/lib/freeswitch/recordings/cti-{trunk}.wav"
    start = {"Event-Name": "RECORD_START", "Unique-ID": trunk, "Record-File-Path": path}
    calls, _ = run(new_tracker(), [*events[: bridge + 1], start, *events[bridge + 1 :]])
    [call] = calls.values()
    assert call["recordings"] == [path]


def test_a_reconnect_adopts_a_ringing_call_and_pops_it_once() -> None:
    events = recorded("inbound_answered")
    answer = next(
        i
        for i, e in enumerate(events)
        if e.get("Event-Name") == "CHANNEL_ANSWER" and e["Channel-Name"].startswith("sofia/")
    )
    # What uuid_dump gives for each leg alive just before the answer: its newest
    # full event (the link went down before the answer was seen).
    live: dict[str, dict] = {}
    for e in events[:answer]:
        if e.get("Event-Name") == "CHANNEL_CREATE" or e.get("Unique-ID") in live:
            if "variable_uuid" in e or e.get("Event-Name") == "CHANNEL_CREATE":
                live[e["Unique-ID"]] = e
    tracker = new_tracker()
    adopted = tracker.resync(list(live.values())[::-1], NOW)  # any order
    assert [e.extension for e in adopted if e.type == "call.ringing"] == ["101"]
    calls, rest = run(tracker, events[answer:])
    [call] = calls.values()
    check_call("inbound_answered", call)
    assert not [e for e in rest if e.type == "call.ringing"]


def test_calls_that_ended_while_the_link_was_down_are_closed_and_marked() -> None:
    events = recorded("inbound_missed")
    ringing = cut_at(events, "CHANNEL_CREATE", "sofia/") + 1
    tracker = new_tracker()
    run(tracker, events[:ringing])
    ended = tracker.resync([], NOW + timedelta(minutes=5))
    [end] = [e for e in ended if e.type == "call.ended"]
    assert (end.outcome, end.missed) == ("unknown", False)
    [call] = tracker.take_changed()
    assert call.ended_while_disconnected and call.end_unknown
    assert call.ended_at < NOW  # the last moment it was known to go on, not "now"


def test_a_call_in_progress_at_a_restart_is_found_again_not_popped_twice() -> None:
    events = recorded("inbound_answered")
    ringing = cut_at(events, "CHANNEL_CREATE", "sofia/") + 1
    before = new_tracker()
    run(before, events[:ringing])
    [stored] = before.take_changed() or [s.call for s in before.calls.values()]
    saved = Call(**{f: getattr(stored, f) for f in stored.__dataclass_fields__})
    live = {e["Unique-ID"]: e for e in events[:ringing] if e.get("Event-Name") == "CHANNEL_CREATE"}
    after = new_tracker()
    after.restore([saved])
    adopted = after.resync(list(live.values()), NOW)
    assert not [e for e in adopted if e.type == "call.ringing"]
    calls, _ = run(after, events[ringing:])
    assert list(calls) == [saved.id]
    check_call("inbound_answered", calls[saved.id])


def test_bad_events_are_skipped_and_counted_and_the_feed_goes_on() -> None:
    tracker = new_tracker()
    bad = [
        {"Event-Name": "CHANNEL_CREATE"},
        {
            "Event-Name": "CHANNEL_ANSWER",
            "Unique-ID": "x",
            "Event-Date-Timestamp": "99999999999999999999999",
        },
        {"Event-Name": "CUSTOM", "Event-Subclass": "spandsp::rxfaxresult", "Unique-ID": "nope"},
        {"Event-Name": "CHANNEL_HANGUP_COMPLETE", "Unique-ID": ""},
    ]
    run(tracker, bad)
    calls, _ = run(tracker, recorded("busy"))
    [call] = calls.values()
    check_call("busy", call)


@pytest.mark.parametrize("as_list", [True, False])
def test_a_second_transfer_reads_the_transfer_history_array(as_list) -> None:
    events = recorded("blind_transfer")
    bridge = max(i for i, e in enumerate(events) if e.get("Event-Name") == "CHANNEL_BRIDGE")
    trunk = events[bridge]
    first = trunk["variable_transfer_history"]
    second = first.replace(":102/", ":103/")
    history = [first, second] if as_list else f"ARRAY::{first}|:{second}"
    again = {**trunk, "Event-Name": "CHANNEL_UNBRIDGE", "variable_transfer_history": history}
    calls, _ = run(new_tracker(), [*events[: bridge + 1], again, *events[bridge + 1 :]])
    [call] = calls.values()
    assert [(t["from"], t["to"]) for t in call["transfers"]] == [("101", "102"), ("102", "103")]


_RECORDED = [e for name in SCENARIOS for e in recorded(name)]
# The fields the tracker reads, first; then any other a recording has.
_READ = [
    "Event-Name", "Event-Subclass", "Unique-ID", "Old-Unique-ID", "Channel-Name",
    "Call-Direction", "Answer-State", "Hangup-Cause", "Event-Date-Timestamp",
    "Caller-Caller-ID-Number", "Caller-Caller-ID-Name", "Caller-Destination-Number",
    "Caller-Channel-Created-Time", "Other-Leg-Unique-ID", "Bridge-A-Unique-ID",
    "Bridge-B-Unique-ID", "CC-Action", "CC-Cause", "CC-Queue", "CC-Member-Session-UUID",
    "Record-File-Path", "from-user", "variable_dialed_user", "variable_presence_id",
    "variable_transfer_history", "variable_other_loopback_leg_uuid", "variable_cc_queue",
    "variable_originating_leg_uuid", "variable_cc_member_session_uuid",
    "variable_fax_document_transferred_pages", "variable_fax_success", "variable_domain_name",
]  # fmt: skip
_FIELDS = _READ + sorted({k for e in _RECORDED for k in e} - set(_READ))
_UUIDS = sorted({e["Unique-ID"] for e in _RECORDED if "Unique-ID" in e})
_VALUES = st.one_of(
    st.sampled_from(["", "x", "-1", "99999999999999999999", "answered", "CUSTOM", "ARRAY::a|:b"]),
    st.sampled_from(_UUIDS),
    st.sampled_from(sorted(new_tracker().events)),
    st.text(max_size=20),
    st.lists(st.text(max_size=5), max_size=3),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(_RECORDED) - 1),
            st.dictionaries(
                st.one_of(st.sampled_from(_READ), st.sampled_from(_FIELDS)), _VALUES, max_size=3
            ),
            st.sets(st.sampled_from(_READ), max_size=2),
        ),
        max_size=60,
    )
)
def test_fuzzed_events_never_raise_and_the_feed_goes_on(mutations) -> None:
    """Recorded events, reordered, with fields dropped or replaced by junk: the tracker
    never raises, and a good call after them still comes out right."""
    tracker = new_tracker()
    for index, changes, dropped in mutations:
        event = {k: v for k, v in {**_RECORDED[index], **changes}.items() if k not in dropped}
        tracker.feed(event, NOW)
        tracker.take_changed()
    tracker.resync([], NOW)  # and a reconnect closes whatever the junk opened
    tracker.take_changed()
    calls, _ = run(tracker, refresh(recorded("inbound_answered")))
    [call] = [c for c in calls.values() if c["external_number"] == "+78125550101"]
    check_call("inbound_answered", call)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("domain", "office.example.com XML evil"),
        ("context", "default,x"),
        ("domains", ["a}b"]),
        ("record_file", "/rec/{call}.wav"),
        ("record_file", "relative/{uuid}.wav"),
        ("fax_dialstring", "sofia/gateway/t/{number}/{x}"),
        ("fax_dialstring", "sofia/gateway/t"),
        ("extension_channels", ["^sofia/(?P<e>[0-9]+)@"]),
        ("outside_channels", ["(unclosed"]),
    ],
)
def test_settings_refuse_what_could_break_a_command_or_fail_later(option, value) -> None:
    from pydantic import ValidationError

    from pbx_adapters.freeswitch.settings import FreeswitchSettings

    base = {"type": "freeswitch", "host": "h", "password": "p", "domain": "d.example"}
    FreeswitchSettings.model_validate(base)
    with pytest.raises(ValidationError):
        FreeswitchSettings.model_validate({**base, option: value})
