import asyncio
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from cti.bus import InProcessBus, SubscriberLagged
from cti.domain import Direction, LineState, Outcome, SmsStatus, TransferKind
from cti.events import (
    CallAnswered,
    CallEnded,
    CallRinging,
    CallTransferred,
    FaxReceived,
    LineStateChanged,
    LinkStateChanged,
    SmsReceived,
    SmsStatusChanged,
    event_from_dict,
)


def ringing(n: int, extension: str = "101") -> CallRinging:
    return CallRinging(
        call_id=f"c{n}",
        extension=extension,
        direction=Direction.INBOUND,
        external_number="+78121234567",
        external_name="ООО Ромашка",
    )


async def test_every_subscriber_gets_events_in_order() -> None:
    bus = InProcessBus()
    a, b = bus.subscribe(name="a"), bus.subscribe(name="b")
    for n in range(5):
        await bus.publish(ringing(n))
    assert [(await a.get()).call_id for _ in range(5)] == ["c0", "c1", "c2", "c3", "c4"]
    assert [(await b.get()).call_id for _ in range(5)] == ["c0", "c1", "c2", "c3", "c4"]


async def test_prefix_filter() -> None:
    bus = InProcessBus()
    lines = bus.subscribe(prefixes=["line."])
    await bus.publish(ringing(1))
    await bus.publish(LineStateChanged(extension="101", state=LineState.RINGING))
    event = await asyncio.wait_for(lines.get(), 1)
    assert event.type == "line.state"
    assert lines.pending() == 0


async def test_slow_subscriber_never_blocks_publisher_and_is_told_to_resync() -> None:
    bus = InProcessBus()
    slow = bus.subscribe(maxsize=10, name="slow")
    fast = bus.subscribe(maxsize=100_000, name="fast")
    for n in range(10_005):  # would block forever if publish waited for the slow reader
        await bus.publish(ringing(n))
    assert slow.pending() <= 10
    assert fast.pending() == 10_005
    with pytest.raises(SubscriberLagged) as lag:
        await slow.get()
    assert lag.value.dropped + slow.pending() == 10_005
    # After the resync notice it goes on with new events.
    await bus.publish(ringing(99_999))
    events = [await slow.get() for _ in range(slow.pending())]
    assert events[-1].call_id == "c99999"


async def test_waiting_subscriber_wakes_and_closed_subscription_ends_iteration() -> None:
    bus = InProcessBus()
    sub = bus.subscribe()
    received = []

    async def consume() -> None:
        async for event in sub:
            received.append(event.call_id)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    await bus.publish(ringing(1))
    await asyncio.sleep(0)
    bus.close()
    await asyncio.wait_for(task, 1)
    assert received == ["c1"]
    await bus.publish(ringing(2))  # nobody left; still fine


EXAMPLES = [
    ringing(1),
    CallAnswered(call_id="c1", extension="102"),
    CallTransferred(
        call_id="c1", kind=TransferKind.BLIND, from_extension="102", to_extension="103"
    ),
    CallEnded(
        call_id="c1", outcome=Outcome.ABANDONED, missed=True, involved_extensions=("101", "102")
    ),
    LineStateChanged(extension="101", state=LineState.IN_USE),
    SmsReceived(sms_id="s1", modem="sim1", sender="+995322123456", text="გამარჯობა 👋"),
    SmsStatusChanged(sms_id="s1", status=SmsStatus.FAILED, reason="+CMS ERROR: 38"),
    FaxReceived(
        fax_id=1,
        call_id="lab:1.1",
        number="+78121234567",
        remote_station="ROMASHKA",
        pages=2,
        status="received",
        client_name="ООО Ромашка",
        assignee_extensions=("101",),
    ),
    LinkStateChanged(name="office", kind="pbx", up=False, detail="connection refused"),
]


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: e.type)
def test_events_round_trip_through_dicts(event) -> None:
    import json

    data = json.loads(json.dumps(event.to_dict(), ensure_ascii=False))
    assert event_from_dict(data) == event


@given(text=st.text(), number=st.text(max_size=20))
def test_any_unicode_survives_round_trip(text: str, number: str) -> None:
    event = SmsReceived(
        sms_id="s", modem="m", sender=number, text=text, at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    assert event_from_dict(event.to_dict()) == event


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"type": "nope"},
        {"type": "call.ended", "call_id": "c", "outcome": "exploded"},
        {"type": "call.answered"},
        {"type": "line.state", "extension": "1", "state": "idle", "at": "yesterday"},
    ],
)
def test_malformed_event_dicts_are_value_errors(data: dict) -> None:
    with pytest.raises(ValueError):
        event_from_dict(data)


def test_events_say_which_extensions_they_concern() -> None:
    assert ringing(1, "105").extensions() == {"105"}
    assert EXAMPLES[2].extensions() == {"102", "103"}
    assert EXAMPLES[3].extensions() == {"101", "102"}
    assert EXAMPLES[8].extensions() == set()


def test_published_events_are_counted_by_type() -> None:
    registry = CollectorRegistry()
    bus = InProcessBus(registry)
    for n in range(3):
        bus.publish_nowait(ringing(n))
    bus.publish_nowait(CallEnded(call_id="c1", outcome=Outcome.ANSWERED, missed=False))

    def count(kind: str) -> float | None:
        return registry.get_sample_value("cti_bus_events_published_total", {"type": kind})

    assert (count("call.ringing"), count("call.ended")) == (3.0, 1.0)


def test_event_ids_are_unique_128_bit_hex() -> None:
    ids = {ringing(0).event_id for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


async def test_a_listener_hears_each_event_in_the_publishers_turn(caplog) -> None:
    bus = InProcessBus()
    heard: list[str] = []

    def fails(event) -> None:
        raise RuntimeError("cannot take this one")

    bus.listen(fails, name="broken")
    stop = bus.listen(lambda event: heard.append(event.call_id), name="feed")
    queued = bus.subscribe(name="queued")
    bus.publish_nowait(ringing(1))
    assert heard == ["c1"]  # at once, before anything awaited
    assert (await queued.get()).call_id == "c1"  # the others go on
    assert any(r.getMessage() == "a bus listener failed on an event" for r in caplog.records)
    stop()
    bus.publish_nowait(ringing(2))
    assert heard == ["c1"]
