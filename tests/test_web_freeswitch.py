"""The desk with a FreeSWITCH beside the Asterisk: a real headless Chromium against the
service, one link to the AMI simulator and one to the ESL simulator, each replaying
its lab's recorded calls. A FreeSWITCH call pops like an Asterisk one, and both PBXs'
calls are on one desk and in one call log."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest_asyncio
from e2e_helpers import (
    BROWSER_TESTS,
    MANAGER_NAME,
    NewPage,
    Office,
    api_get,
    browser,
    card,
    eventually,
    expect,
    fresh,
    index_of,
    new_page,
    shot,
    sign_in,
    start_office,
    stop_office,
    token_of,
)
from fs_lab import SHIPPED

from pbx_adapters.freeswitch.simulator import load_transcript, refresh

pytestmark = BROWSER_TESTS
__all__ = ["browser", "new_page"]  # the shared fixtures this module uses


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def office(tmp_path_factory) -> AsyncIterator[Office]:
    office = await start_office(tmp_path_factory.mktemp("e2e-fs"), freeswitch=True)
    yield office
    await stop_office(office)


def fs_call(name: str, number: str) -> list[dict]:
    """A FreeSWITCH recording with fresh uuids, from ``number``."""
    events = load_transcript(SHIPPED / f"{name}.json.esl.gz")
    creates = [e for e in events if e.get("Event-Name") == "CHANNEL_CREATE"]
    [recorded] = {e["Caller-Caller-ID-Number"] for e in creates if e["Channel-Name"].endswith("-a")}
    return refresh(events, number_map={recorded: number})


def cut_at(events: list[dict], name: str, channel: str) -> int:
    return next(
        i
        for i, e in enumerate(events)
        if e.get("Event-Name") == name and e.get("Channel-Name", "").startswith(channel)
    )


def fs_call_from(office: Office, number: str):
    assert office.switch is not None
    for state in office.service.pbx["fs"].tracker.calls.values():
        if state.call.external_number == number:
            return state.call
    return None


async def test_a_freeswitch_ring_group_pops_the_client_then_is_answered_elsewhere(
    new_page: NewPage, office: Office
) -> None:
    operator = await new_page()
    await sign_in(operator, "anna")
    reception = await new_page()
    await sign_in(reception, "rita")
    events = fs_call("ringgroup_answered_by_102", "+78125550104")  # ООО «Ромашка»
    answer = cut_at(events, "CHANNEL_ANSWER", "sofia/internal/102")
    await office.switch.play(events[:answer])
    await eventually(lambda: fs_call_from(office, "+78125550104"))
    call_id = fs_call_from(office, "+78125550104").id
    assert call_id.startswith("fs:")
    for page in (operator, reception):
        pop = card(page, call_id)
        await expect(pop).to_have_count(1)
        await expect(pop.locator(".badge")).to_have_text("Ringing: 101, 102")
        await expect(pop.locator(".caller")).to_contain_text("+7 812 555 01 04")
        await expect(pop.locator(".client-name")).to_have_text("ООО «Ромашка»")
        await expect(pop.locator(".contact")).to_have_text("Сергей Волков")
        await expect(pop.locator(".manager-name")).to_have_text(MANAGER_NAME)
    for extension in ("101", "102"):  # the colleagues panel follows the FreeSWITCH's lines
        line = reception.locator(f'#lines li[data-extension="{extension}"]')
        await expect(line).to_have_class(re.compile(r"\bls-ringing\b"))
    await shot(reception, "fs-1-reception-ringing")
    await office.switch.play(events[answer:])
    await expect(card(operator, call_id)).to_have_count(0)  # 102 took it, then it ended
    await expect(card(reception, call_id)).to_have_count(0)
    await eventually(lambda: not office.service.pbx["fs"].tracker.calls)


async def test_both_pbxs_calls_share_the_desk_and_the_call_log(
    new_page: NewPage, office: Office
) -> None:
    reception = await new_page()
    await sign_in(reception, "rita")
    asterisk = fresh("sip_inbound_answered", seq=901)  # +78125550101
    asterisk_ringing = index_of(asterisk, "BridgeEnter")
    freeswitch = fs_call("inbound_missed", "+79161234567")  # Ирина Кузнецова
    fs_ringing = cut_at(freeswitch, "CHANNEL_CREATE", "sofia/") + 1
    await office.play(asterisk[:asterisk_ringing])
    await office.switch.play(freeswitch[:fs_ringing])
    await eventually(
        lambda: office.live_call("+78125550101") and fs_call_from(office, "+79161234567")
    )
    ast_id = office.live_call("+78125550101").id
    fs_id = fs_call_from(office, "+79161234567").id
    await expect(card(reception, ast_id)).to_have_count(1)
    await expect(card(reception, fs_id)).to_have_count(1)
    await expect(card(reception, fs_id).locator(".client-name")).to_have_text("Ирина Кузнецова")
    # 101 talks on the Asterisk while the FreeSWITCH rings it: the desk shows it busy.
    line = reception.locator('#lines li[data-extension="101"]')
    await expect(line).to_have_class(re.compile(r"\bls-busy\b"))
    await shot(reception, "fs-2-reception-two-pbxs")
    await office.finish(asterisk[asterisk_ringing:])
    await office.switch.play(freeswitch[fs_ringing:])
    await eventually(lambda: not office.service.pbx["fs"].tracker.calls)
    await office.service.call_store.flush()
    token = await token_of(reception)
    calls = {c["id"]: c for c in (await api_get(office, token, "/api/calls"))["calls"]}
    assert (calls[ast_id]["pbx"], calls[ast_id]["outcome"]) == ("lab", "answered")
    assert (calls[fs_id]["pbx"], calls[fs_id]["outcome"], calls[fs_id]["missed"]) == (
        "fs",
        "no_answer",
        True,
    )
    health = await api_get(office, token, "/healthz")
    links = {link["name"]: link["up"] for link in health.get("links", [])}
    assert links.get("lab") and links.get("fs"), health
