"""Attended transfers as the lab Asterisk really does them (tests/fixtures/lab, issue 15:
D2, D3, D8): the target keeps the leg it rang on, answers only when it answers, and the
PBX's recall of the transferer is the same call, not a new outbound one."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lab import LAB_INBOUND_CONTEXTS, LAB_TRUNKS

from pbx_adapters.asterisk.channels import ChannelMap
from pbx_adapters.asterisk.frames import AmiParser
from pbx_adapters.asterisk.tracker import CallTracker

LAB_FIXTURES = Path(__file__).parent / "fixtures" / "lab"


def replay(name: str) -> tuple[list[dict], list]:
    t = CallTracker(
        "lab", ChannelMap(trunk_patterns=LAB_TRUNKS), inbound_contexts=LAB_INBOUND_CONTEXTS
    )
    calls: dict[str, dict] = {}
    events: list = []
    now = datetime(2026, 12, 2, tzinfo=UTC)
    for frame in AmiParser().feed((LAB_FIXTURES / f"{name}.ami").read_bytes()):
        now += timedelta(milliseconds=10)
        events += t.feed(frame, now)
        for call in t.take_changed():
            calls[call.id] = call.to_dict()
    assert t.problems == 0 and t.calls == {}
    return list(calls.values()), events


def seconds(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


def legs(call: dict) -> list[tuple[str, str]]:
    return [(leg["extension"], leg["result"]) for leg in call["legs"]]


def test_completed_attended_transfer_keeps_the_targets_real_times() -> None:
    [call], events = replay("attended_transfer_completed")
    assert (call["first_answered_by"], call["answered_by"]) == ("101", "102")
    assert [(t["kind"], t["from"], t["to"]) for t in call["transfers"]] == [
        ("attended", "101", "102")
    ]
    assert legs(call) == [("101", "answered"), ("102", "answered")]
    target = call["legs"][1]
    transfer_at = call["transfers"][0]["at"]
    # D8: it rang and answered during the consultation, and talked until the call ended
    # (CDR: SIP/102 billsec 8), not "ring = answer = transfer, ended 0.45 s later".
    assert seconds(target["ring_started_at"], transfer_at) > 3
    assert seconds(target["answered_at"], transfer_at) > 1
    assert target["ended_at"] == call["ended_at"]
    assert seconds(transfer_at, target["ended_at"]) > 7
    # Taking the consultation is not taking the call: 102 answers it at the transfer.
    answered = [(e.extension, e.at.isoformat()) for e in events if e.type == "call.answered"]
    assert answered == [("101", call["answered_at"]), ("102", transfer_at)]


@pytest.mark.parametrize(
    ("name", "last_leg"),
    [
        ("attended_transfer_blond_rejected", ("101", "answered")),
        ("attended_transfer_blond_recall_unanswered", ("101", "cancelled")),
    ],
)
def test_blond_transfer_to_a_phone_that_refuses_is_one_call_answered_by_the_transferer(
    name: str, last_leg: tuple[str, str]
) -> None:
    calls, events = replay(name)
    # D3: the recall to 101 is this call's, not a new outbound call "abandoned".
    [call] = calls
    assert call["direction"] == "inbound" and call["outcome"] == "answered"
    # D2: 102 never answered (CDR: SIP/102 BUSY), so it is not the one who answered.
    assert call["answered_by"] == "101" and call["first_answered_by"] == "101"
    assert legs(call) == [("101", "answered"), ("102", "busy"), last_leg]
    assert [e.extension for e in events if e.type == "call.ringing"] == ["101", "102", "101"]
    assert not call["missed"]


def test_blond_transfer_the_caller_gives_up_on_leaves_the_target_unanswered() -> None:
    [call], _ = replay("attended_transfer_blond_caller_gave_up")
    assert call["answered_by"] == "101"
    assert legs(call) == [("101", "answered"), ("102", "cancelled")]
