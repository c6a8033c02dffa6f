"""Mango Office: its signed forms, its calls rebuilt from events in any order and sent
twice, its webhooks through the service (a forged or replayed one changes nothing) and
click-to-dial through a stand-in of its API."""

from __future__ import annotations

import hashlib
import random
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
from helpers import dial_through_api, ended_calls, stored_calls

from cti.calls import Call
from cti.config import Config, DatabaseConfig, ServerConfig
from cti.events import CallAnswered, CallEnded, CallRinging, OriginateResult
from cti.http.app import build_app
from cti.service import Service
from pbx_adapters.cloud.mango.book import MangoBook
from pbx_adapters.cloud.mango.settings import MangoSettings
from pbx_adapters.cloud.mango.sign import BadSignature, sign, signed_form, verified_payload
from pbx_adapters.cloud.mango.standin import MangoStandIn, click_to_dial, inbound

KEY, SALT = "vpbx-key-42", "salt-of-the-vpbx"  # the stand-in's
T0 = 1_764_580_000  # 2025-12-01 09:06:40 UTC
CALLER = "78125550104"


def feed(book: MangoBook, events, now: float = T0 + 100):
    out = []
    for path, payload in events:
        if path == "events/call":
            out += book.event(payload, now)
        else:
            out += book.summary(payload, now)
    return out


def final(events) -> Call:
    book = MangoBook("mango", "RU")
    feed(book, events)
    [call] = book.take_changed()
    return call


def test_the_signature_is_sha256_of_key_json_and_salt() -> None:
    assert sign("k", '{"a":1}', "s") == hashlib.sha256(b'k{"a":1}s').hexdigest()
    form = signed_form(KEY, SALT, {"entry_id": "Е1", "to": {"extension": "101"}})
    assert verified_payload(urlencode(form).encode(), KEY, SALT)["entry_id"] == "Е1"
    for bad in (urlencode({**form, "sign": "0" * 64}), urlencode({**form, "vpbx_api_key": "x"})):
        with pytest.raises(BadSignature):
            verified_payload(bad.encode(), KEY, SALT)
    with pytest.raises(BadSignature):
        verified_payload(urlencode(form).encode() + b"\xff", KEY, SALT)


def test_an_inbound_call_rings_two_phones_is_answered_and_ends() -> None:
    events = inbound("e1", CALLER, ["101", "102"], T0, answered_by="101")
    book = MangoBook("mango", "RU")
    before_summary = feed(book, events[:-1])
    kinds = [(type(e).__name__, getattr(e, "extension", None)) for e in before_summary]
    assert kinds == [
        ("CallRinging", "101"),
        ("CallRinging", "102"),
        ("CallAnswered", "101"),
        ("CallEnded", None),  # everyone hung up: the pop closes before the summary
    ]
    ringing = before_summary[0]
    assert isinstance(ringing, CallRinging) and ringing.external_number == "+78125550104"
    assert book.take_changed()[0].ended_at is None  # not written as over yet
    assert feed(book, events[-1:]) == []
    [call] = book.take_changed()
    assert (call.direction.value, call.answered_by, call.outcome.value, call.missed) == (
        "inbound",
        "101",
        "answered",
        False,
    )
    assert call.did == "+74951000000" and call.wait_seconds == 6.0 and call.talk_seconds == 36.0


def test_missed_only_when_the_summary_says_nobody_answered() -> None:
    missed = final(inbound("e2", CALLER, ["101"], T0, answered_by=None))
    assert (missed.outcome.value, missed.missed) == ("no_answer", True)
    queued = final(inbound("e3", CALLER, ["101", "102"], T0, answered_by="102", queue=True))
    assert (queued.queue, queued.answered_by, queued.missed) == ("sales", "102", False)


def test_a_transfer_moves_the_call_to_the_other_extension() -> None:
    call = final(inbound("e4", CALLER, ["101"], T0, answered_by="101", transfer_to="103"))
    assert [(t.from_extension, t.to) for t in call.transfers] == [("101", "103")]
    assert (call.answered_by, call.first_answered_by) == ("103", "101")


def test_click_to_dial_rings_the_operator_first_without_a_pop() -> None:
    book = MangoBook("mango", "RU")
    out = feed(book, click_to_dial("e5", "101", "74957770133", T0, "cmd-1"))
    assert not [e for e in out if isinstance(e, CallRinging)]
    [call] = book.take_changed()
    assert (call.direction.value, call.caller_extension, call.external_number) == (
        "outbound",
        "101",
        "+74957770133",
    )
    assert call.originate_id == "cmd-1" and call.outcome.value == "answered"


@pytest.mark.parametrize("seed", range(12))
def test_the_same_events_in_any_order_and_twice_make_the_same_call(seed) -> None:
    rng = random.Random(seed)
    events = inbound(f"e{seed}", CALLER, ["101", "102"], T0, answered_by="102", transfer_to="104")
    shuffled = events + rng.sample(events, k=len(events) // 2)
    rng.shuffle(shuffled)
    assert final(shuffled).to_dict() == final(events).to_dict()


# -- through the service -------------------------------------------------------------


def mango_settings(api_url: str) -> MangoSettings:
    return MangoSettings(name="mango", type="mango", api_url=api_url, api_key=KEY, api_salt=SALT)


@pytest.fixture
async def office(tmp_path: Path, aiohttp_client):
    standin = MangoStandIn(KEY, SALT)
    await standin.start()
    config = Config(
        server=ServerConfig(data_dir=tmp_path, port=0),
        database=DatabaseConfig(
            url=f"sqlite+aiosqlite:///{tmp_path / 'cti.db'}", auto_migrate=True
        ),
        pbx=[mango_settings(standin.url)],
    )
    service = await Service.start(config)
    client = await aiohttp_client(build_app(service))
    standin.webhook_url = str(client.make_url("/pbx/mango/"))
    yield service, client, standin
    await service.close()
    await standin.stop()


async def test_webhooks_forged_or_replayed_change_nothing(office) -> None:
    service, client, standin = office
    now = int(time.time())
    events = inbound("w1", CALLER, ["101"], now - 60, answered_by="101")
    first = events[0]
    assert await standin.post(*first, forged=True) == 403
    assert await standin.post("events/call", {**first[1], "timestamp": now - 7200}) == 409
    assert await stored_calls(service) == []
    assert service.pbx["mango"].rejected == {"bad signature": 1, "an old event (a replay?)": 1}
    metrics = await (await client.get("/metrics")).text()
    assert 'cti_webhook_rejected_total{pbx="mango",reason="bad signature"} 1.0' in metrics
    assert all(status == 200 for status in await standin.play(events + events[:3]))
    [call] = await stored_calls(service)
    assert (call.answered_by, call.outcome.value) == ("101", "answered")
    raw = await client.post("/pbx/mango/events/call", data={"json": "{}"})
    assert raw.status == 403
    health = await (await client.get("/healthz")).json()
    assert health["pbx"]["mango"]["live_events"] is True


async def test_click_to_dial_through_mango(office) -> None:
    service, client, standin = office
    _, result = await dial_through_api(service, client, "101", "+7 495 777-01-33")
    name, command = standin.commands[0]
    assert name == "callback" and command["from"] == {"extension": "101"}
    assert command["to_number"] == "74957770133"
    assert isinstance(result, OriginateResult) and result.success
    [call] = await ended_calls(service)
    assert call.originate_id == command["command_id"] and call.external_number == "+74957770133"


def test_events_of_one_call_make_one_pop_card_in_order() -> None:
    book = MangoBook("mango", "RU")
    out = feed(book, inbound("p1", CALLER, ["101"], T0, answered_by="101"))
    assert [type(e) for e in out] == [CallRinging, CallAnswered, CallEnded]


def _as_logged(call: Call) -> dict:
    """A stored call as the log shows it, but for its id."""
    return {k: v for k, v in call.to_dict().items() if k not in ("id", "pbx_ref")}


async def test_the_call_log_is_the_same_when_webhooks_come_shuffled_and_twice(office) -> None:
    service, _, standin = office
    now = int(time.time()) - 120
    in_order = inbound("o1", CALLER, ["101", "102"], now, answered_by="102", transfer_to="104")
    shuffled = inbound("s1", CALLER, ["101", "102"], now, answered_by="102", transfer_to="104")
    shuffled += shuffled[:4]
    random.Random(7).shuffle(shuffled)
    assert set(await standin.play(in_order + shuffled)) == {200}
    await ended_calls(service)
    calls = {c.id: c for c in await stored_calls(service)}
    assert set(calls) == {"mango:o1", "mango:s1"} and calls["mango:s1"].ended_at
    assert _as_logged(calls["mango:o1"]) == _as_logged(calls["mango:s1"])


async def test_an_event_with_no_time_is_refused_and_spoils_nothing(office) -> None:
    service, _, standin = office
    events = inbound("t1", CALLER, ["101"], int(time.time()) - 30, answered_by="101")
    timeless = {k: v for k, v in events[0][1].items() if k != "timestamp"}
    assert await standin.post("events/call", timeless) == 400
    assert set(await standin.play(events)) == {200}
    [call] = await ended_calls(service)
    assert call.answered_by == "101"
