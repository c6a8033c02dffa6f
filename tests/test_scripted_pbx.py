"""A second PBX interface, plugged in through the factory: the scripted PBX
(pbx_adapters/scripted), which reports calls from a list. Nothing in the core knows it;
it comes in through its entry point and its own [[pbx]] options, and drives the same
call log, API commands and screen pops as Asterisk does."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers import eventually, new_token

from cti.clients.builtin import ClientIn, PhoneIn, save_client
from cti.config import ConfigError, load_config
from cti.domain import LineState, Outcome
from cti.events import CallAnswered, CallEnded, CallRinging, LineStateChanged
from cti.http.app import build_app
from cti.pbx import PbxSettings, plugins
from cti.service import Service
from pbx_adapters.scripted.calls import ScriptedCalls
from pbx_adapters.scripted.settings import Step

T0 = datetime(2026, 12, 2, 9, tzinfo=UTC)
CALLER = "+78125550104"


def scripted_toml(data_dir: Path, script: str = "") -> str:
    return f"""
[server]
data_dir = "{data_dir}"
port = 0
[database]
auto_migrate = true
[[pbx]]
name = "fake"
type = "scripted"
{script}
"""


def test_the_scripted_calls_are_a_sans_io_core() -> None:
    calls = ScriptedCalls("fake", "RU")
    at = [T0 + timedelta(seconds=s) for s in range(4)]
    events = calls.apply(Step(event="ring", call="a", number="88125550104", extension="101"), at[0])
    assert events == [
        CallRinging(
            call_id="fake:a",
            extension="101",
            direction="inbound",
            external_number=CALLER,
            event_id=events[0].event_id,
            at=events[0].at,
        )
    ]
    calls.apply(Step(event="ring", call="a", extension="102"), at[0])
    [answered] = calls.apply(Step(event="answer", call="a", extension="102"), at[1])
    assert isinstance(answered, CallAnswered) and answered.extension == "102"
    [ended] = calls.apply(Step(event="end", call="a"), at[3])
    assert isinstance(ended, CallEnded) and ended.outcome is Outcome.ANSWERED
    [call] = calls.take_changed()
    assert (call.answered_by, call.wait_seconds, call.talk_seconds) == ("102", 1.0, 2.0)
    assert [(leg.extension, leg.result) for leg in call.legs] == [
        ("101", "cancelled"),
        ("102", "answered"),
    ]
    assert call.pbx_ref == {"script": "a"} and calls.calls == {}
    [line] = calls.apply(Step(event="line", extension="101", state=LineState.RINGING), at[3])
    assert isinstance(line, LineStateChanged) and calls.lines == {"101": LineState.RINGING}
    with pytest.raises(ValueError, match="no call 'b'"):
        calls.apply(Step(event="answer", call="b", extension="101"), at[3])


def test_the_factory_knows_both_adapters_and_the_config_their_options(tmp_path: Path) -> None:
    assert {"asterisk", "scripted"} <= plugins().keys()
    path = tmp_path / "cti.toml"
    path.write_text(scripted_toml(tmp_path, 'script = [{ event = "ring", call = "x" }]'))
    [pbx] = load_config(path, environ={}).pbx
    assert isinstance(pbx, PbxSettings) and type(pbx).__name__ == "ScriptedSettings"
    # Another adapter's option on a scripted entry is named as unknown, with its place.
    path.write_text(scripted_toml(tmp_path, 'host = "pbx.local"'))
    with pytest.raises(ConfigError, match=r"pbx\[0\]\.host: unknown option"):
        load_config(path, environ={})
    path.write_text(scripted_toml(tmp_path).replace('"scripted"', '"mitel"'))
    with pytest.raises(ConfigError, match=r"pbx\[0\]\.type: Input should be 'asterisk' or"):
        load_config(path, environ={})


async def test_a_scripted_call_is_logged_and_commanded_like_any_other(
    tmp_path: Path, aiohttp_client
) -> None:
    path = tmp_path / "cti.toml"
    script = """script = [
  { event = "ring", call = "a", number = "88125550104", name = "Client", extension = "101" },
  { after = 0.05, event = "answer", call = "a", extension = "101" },
  { after = 0.05, event = "end", call = "a" },
  { event = "ring", call = "b", number = "88125550104", extension = "101" },
]"""
    path.write_text(scripted_toml(tmp_path, script))
    service = await Service.start(load_config(path, environ={}))
    try:
        async with service.sessions() as session:
            await save_client(session, ClientIn("ООО «Ромашка»", phones=[PhoneIn(CALLER)]), "RU")
            await session.commit()
        token = await new_token(service, "operator", extension="101")
        client = await aiohttp_client(build_app(service))
        headers = {"Authorization": f"Bearer {token}"}
        fake = service.pbx["fake"]
        await eventually(lambda: fake.live_call("fake:b") is not None)

        async def logged(call_id: str) -> dict:
            response = await client.get(f"/api/calls/{call_id}", headers=headers)
            return await response.json() if response.status == 200 else {}

        async def ended(call_id: str) -> dict:
            call = await logged(call_id)
            return call if call.get("ended_at") else {}

        await eventually(lambda: ended("fake:a"))  # written within the write interval
        call = await logged("fake:a")
        assert (call["outcome"], call["answered_by"], call["missed"]) == ("answered", "101", False)
        assert call["client"]["name"] == "ООО «Ромашка»" and "pbx_ref" not in call

        # Commands reach the adapter through the core's interface, errors as the API's.
        response = await client.post(
            "/api/calls", json={"number": "8 812 555-01-04"}, headers=headers
        )
        assert response.status == 202 and fake.dialled[-1].extension == "101"
        response = await client.post(
            "/api/calls/fake:b/recording", json={"record": True}, headers=headers
        )
        assert (response.status, (await response.json())["error"]["reason"]) == (
            409,
            "not_supported",
        )
        response = await client.post("/api/calls/fake:b/hangup", json={}, headers=headers)
        assert response.status == 202 and fake.live_call("fake:b") is None
        await eventually(lambda: ended("fake:b"))
        assert (await logged("fake:b"))["outcome"] == "no_answer"
        response = await client.post("/api/calls/fake:b/hangup", json={}, headers=headers)
        assert (response.status, (await response.json())["error"]["reason"]) == (409, "call_over")
    finally:
        await service.close()


async def test_a_broken_script_step_is_skipped_and_the_script_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "cti.toml"
    script = """script = [
  { event = "answer", call = "nobody", extension = "101" },
  { event = "ring", call = "c", number = "+78125550104", extension = "101" },
]"""
    path.write_text(scripted_toml(tmp_path, script))
    service = await Service.start(load_config(path, environ={}))
    try:
        await eventually(lambda: service.pbx["fake"].live_call("fake:c") is not None)
        assert service.links.all()[0].up
    finally:
        await asyncio.wait_for(service.close(), 10)
