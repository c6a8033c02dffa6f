"""Zadarma and Novofon: their signatures, calls rebuilt from notifications in any order
and sent twice, the URL check, forged and replayed notifications refused, click-to-dial
through a stand-in of the API and a recording fetched and attached after NOTIFY_RECORD."""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from helpers import dial_through_api, ended_calls, eventually, stored_calls
from sqlalchemy import select

from cti.calls import Call
from cti.config import Config, DatabaseConfig, RecordingsConfig, ServerConfig
from cti.db.models import Recording
from cti.events import CallEnded, CallRinging, OriginateResult
from cti.http.app import build_app
from cti.service import Service
from pbx_adapters.cloud.zadarma.book import ZadarmaBook
from pbx_adapters.cloud.zadarma.settings import ZadarmaSettings
from pbx_adapters.cloud.zadarma.sign import api_authorization, webhook_signature
from pbx_adapters.cloud.zadarma.standin import ZadarmaStandIn, inbound

KEY, SECRET = "zd-key", "zd-secret"
MOSCOW = ZoneInfo("Europe/Moscow")
START = "2026-12-01 10:00:00"
HEARD = datetime(2026, 12, 1, 7, 1, 30, tzinfo=ZoneInfo("UTC"))
CALLER = "78125550104"


def book_of(notifications) -> tuple[ZadarmaBook, list]:
    book = ZadarmaBook("zd", "RU", MOSCOW)
    events = [e for n in notifications for e in book.notify(n, HEARD)]
    return book, events


def final(notifications) -> Call:
    book, _ = book_of(notifications)
    [call] = book.take_changed()
    return call


def test_signatures_as_the_api_documents_them() -> None:
    fields = {
        "event": "NOTIFY_START",
        "caller_id": "7812",
        "called_did": "7495",
        "call_start": START,
    }
    digest = hmac.new(SECRET.encode(), f"78127495{START}".encode(), hashlib.sha1).hexdigest()
    assert webhook_signature(SECRET, fields) == base64.b64encode(digest.encode()).decode()
    answer = {
        "event": "NOTIFY_ANSWER",
        "caller_id": "7812",
        "destination": "101",
        "call_start": START,
    }
    digest = hmac.new(SECRET.encode(), f"7812101{START}".encode(), hashlib.sha1).hexdigest()
    assert webhook_signature(SECRET, answer) == base64.b64encode(digest.encode()).decode()
    query = "from=101&to=74957770133"
    text = "/v1/request/callback/" + query + hashlib.md5(query.encode()).hexdigest()  # noqa: S324
    digest = hmac.new(SECRET.encode(), text.encode(), hashlib.sha1).hexdigest()
    expected = f"{KEY}:{base64.b64encode(digest.encode()).decode()}"
    params = {"to": "74957770133", "from": "101"}
    assert api_authorization(KEY, SECRET, "/v1/request/callback/", params) == expected


def test_an_inbound_call_pops_is_answered_and_ends() -> None:
    book, events = book_of(inbound("z1", CALLER, ["101", "102"], START, answered_by="101"))
    assert [type(e).__name__ for e in events] == [
        "CallRinging",
        "CallRinging",
        "CallAnswered",
        "CallEnded",
    ]
    [call] = book.take_changed()
    assert (call.direction.value, call.external_number, call.did) == (
        "inbound",
        "+78125550104",
        "+74951000000",
    )
    assert call.started_at == datetime(2026, 12, 1, 7, 0, tzinfo=ZoneInfo("UTC"))
    assert (call.answered_by, call.outcome.value, call.missed, call.talk_seconds) == (
        "101",
        "answered",
        False,
        45.0,
    )


@pytest.mark.parametrize(
    ("disposition", "outcome", "missed"),
    [("no answer", "no_answer", True), ("cancel", "abandoned", True), ("busy", "busy", True)],
)
def test_missed_as_the_disposition_says(disposition, outcome, missed) -> None:
    call = final(inbound("z2", CALLER, ["101"], START, answered_by=None, disposition=disposition))
    assert (call.outcome.value, call.missed) == (outcome, missed)


def test_a_transfer_ends_with_the_extension_notify_end_names() -> None:
    call = final(inbound("z3", CALLER, ["101"], START, answered_by="101", transfer_to="103"))
    assert [(t.from_extension, t.to) for t in call.transfers] == [("101", "103")]
    assert call.answered_by == "103"


@pytest.mark.parametrize("seed", range(12))
def test_the_same_notifications_in_any_order_and_twice_make_the_same_call(seed) -> None:
    rng = random.Random(seed)
    notes = inbound(f"z{seed}", CALLER, ["101", "102"], START, answered_by="102", transfer_to="104")
    shuffled = notes + rng.sample(notes, k=len(notes) // 2)
    rng.shuffle(shuffled)
    assert final(shuffled).to_dict() == final(notes).to_dict()


def test_a_notification_heard_twice_adds_no_event() -> None:
    notes = inbound("z9", CALLER, ["101"], START, answered_by=None)
    _, events = book_of(notes + notes)
    assert [type(e) for e in events] == [CallRinging, CallEnded]


# -- through the service -------------------------------------------------------------


@pytest.fixture
async def office(tmp_path: Path, aiohttp_client):
    standin = ZadarmaStandIn(KEY, SECRET)
    await standin.start()
    settings = ZadarmaSettings(
        name="zd",
        type="zadarma",
        api_url=standin.url,
        api_key=KEY,
        api_secret=SECRET,
        time_zone="Europe/Moscow",
        record_delay_seconds=0,
    )
    config = Config(
        server=ServerConfig(data_dir=tmp_path, port=0),
        database=DatabaseConfig(
            url=f"sqlite+aiosqlite:///{tmp_path / 'cti.db'}", auto_migrate=True
        ),
        recordings=RecordingsConfig(dir=str(tmp_path / "recordings")),
        pbx=[settings],
    )
    service = await Service.start(config)
    client = await aiohttp_client(build_app(service))
    standin.webhook_url = str(client.make_url("/pbx/zd/"))
    yield service, client, standin
    await service.close()
    await standin.stop()


def moscow_now(minutes_ago: float = 0) -> str:
    return (datetime.now(MOSCOW) - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%d %H:%M:%S")


async def test_the_url_check_and_forged_or_old_notifications(office) -> None:
    service, client, standin = office
    echo = await client.get("/pbx/zd/", params={"zd_echo": "abc123"})
    assert (echo.status, await echo.text()) == (200, "abc123")
    notes = inbound("s1", CALLER, ["101"], moscow_now(1), answered_by="101")
    assert await standin.post(notes[0], forged=True) == 403
    old = inbound("s2", CALLER, ["101"], moscow_now(60 * 24), answered_by="101")
    assert await standin.post(old[0]) == 409
    unsigned = await client.post("/pbx/zd/", data=notes[0])
    assert unsigned.status == 403
    assert await stored_calls(service) == []
    assert service.pbx["zd"].rejected == {"bad signature": 2, "an old event (a replay?)": 1}
    assert set(await standin.play(notes + notes)) == {200}
    [call] = await stored_calls(service)
    assert (call.answered_by, call.outcome.value) == ("101", "answered")


async def test_click_to_dial_through_zadarma(office) -> None:
    service, client, standin = office
    _, result = await dial_through_api(service, client, "101", "8 495 777-01-33")
    assert standin.requests[0] == ("callback", {"from": "101", "to": "74957770133"})
    assert isinstance(result, OriginateResult) and result.success
    [call] = await ended_calls(service)
    assert (call.direction.value, call.caller_extension, call.external_number) == (
        "outbound",
        "101",
        "+74957770133",
    )
    assert call.originate_id == result.request_id


async def test_a_recording_is_fetched_after_notify_record_and_attached(office, tmp_path) -> None:
    service, _, standin = office
    notes = inbound("r1", CALLER, ["101"], moscow_now(1), answered_by="101", recorded=True)
    assert set(await standin.play(notes + notes[-1:])) == {200}  # NOTIFY_RECORD twice

    async def attached() -> list[Recording]:
        async with service.sessions() as session:
            return list(await session.scalars(select(Recording)))

    await eventually(attached)
    [recording] = await attached()
    assert recording.call_id == "zd:r1"
    assert (tmp_path / "recordings" / recording.path).read_bytes().startswith(b"ID3")
    assert [r for r in standin.requests if r[0] == "record"] == [("record", {"call_id": "rec-r1"})]


async def test_the_call_log_is_the_same_when_notifications_come_shuffled_and_twice(
    office,
) -> None:
    service, _, standin = office
    start = moscow_now(2)
    in_order = inbound("o1", CALLER, ["101", "102"], start, answered_by="102", transfer_to="104")
    shuffled = inbound("s1", CALLER, ["101", "102"], start, answered_by="102", transfer_to="104")
    shuffled += shuffled[:3]
    random.Random(5).shuffle(shuffled)
    assert set(await standin.play(in_order + shuffled)) == {200}
    calls = {c.id: c for c in await stored_calls(service)}
    assert set(calls) == {"zd:o1", "zd:s1"}
    kept = ("direction", "external_number", "did", "answered_by", "outcome", "missed")
    summary = {c.id: ({k: c.to_dict()[k] for k in kept}, [
        (t.from_extension, t.to) for t in c.transfers
    ], sorted(leg.extension for leg in c.legs)) for c in calls.values()}  # fmt: skip
    assert summary["zd:o1"] == summary["zd:s1"]


async def test_a_notification_with_no_call_start_is_refused(office) -> None:
    service, _, standin = office
    notes = inbound("t1", CALLER, ["101"], moscow_now(1), answered_by="101")
    assert await standin.post({k: v for k, v in notes[1].items() if k != "call_start"}) == 400
    assert set(await standin.play(notes)) == {200}
    [call] = await ended_calls(service)
    assert call.answered_by == "101"
