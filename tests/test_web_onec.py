"""The desk with a 1C base as the CRM: a real headless Chromium, the AMI simulator
replaying a lab call, and the OData stand-in holding the caller as a partner. The pop
shows the 1C partner, the contact person and the responsible manager on their
extension (with the line state), the link opens the partner in the 1C client, and the
finished call is a Document_ТелефонныйЗвонок in the base."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import unquote

import pytest_asyncio
from e2e_helpers import (
    BROWSER_TESTS,
    NewPage,
    Office,
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
)
from helpers import onec_crm

from crm_bridge.onec.links import navigation_ref
from crm_bridge.onec.reporter import document_ref
from crm_bridge.onec.standin import OneCStandIn

pytestmark = BROWSER_TESTS
__all__ = ["browser", "new_page"]  # the shared fixtures this module uses


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def base() -> AsyncIterator[OneCStandIn]:
    standin = OneCStandIn()
    await standin.start()
    standin.manager = standin.add_user("Георгий Беридзе (1С)")
    # The caller of sip_inbound_answered, as a contact person of a partner.
    standin.partner = standin.add_partner(
        "Почта Грузии",
        [("", "+995 32 200 00 00")],
        full_name="საქართველოს ფოსტა",
        manager=standin.manager,
    )
    standin.contact = standin.add_contact(
        standin.partner, "Мария Сидорова", [("", "+7 (812) 555-01-01, доб. 7")]
    )
    yield standin
    await standin.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def office(tmp_path_factory, base: OneCStandIn) -> AsyncIterator[Office]:
    crm = onec_crm(
        base,
        onec_users={base.manager: "102"},
        onec_thin_client="e1c://srv1c/ut11",
        lookup_budget_ms=2000,
    )
    office = await start_office(tmp_path_factory.mktemp("e2e-onec"), crm=crm)
    await eventually(lambda: office.service.directory.inner.refreshes > 0)
    yield office
    await stop_office(office)


async def test_a_1c_partner_pops_with_its_manager_and_the_call_lands_in_1c(
    new_page: NewPage, office: Office, base: OneCStandIn
) -> None:
    reception = await new_page()
    await sign_in(reception, "rita")
    frames = fresh("sip_inbound_answered", seq=401)
    ringing = index_of(frames, "Newstate", Channel="SIP/101", ChannelStateDesc="Up")
    await office.play(frames[:ringing])
    await eventually(lambda: office.live_call("+78125550101"))
    call_id = office.live_call("+78125550101").id
    pop = card(reception, call_id)
    await expect(pop.locator(".client-name")).to_have_text("საქართველოს ფოსტა")
    await expect(pop.locator(".contact")).to_have_text("Мария Сидорова")
    await expect(pop.locator(".manager-name")).to_have_text("Георгий Беридзе (1С)")
    await expect(pop.locator(".manager-ext")).to_contain_text("102")
    await expect(pop.locator(".manager .line-state")).to_be_visible()
    link = f"e1c://srv1c/ut11#e1cib/data/Справочник.Партнеры?ref={navigation_ref(base.partner)}"
    href = await pop.locator(".crm-link").get_attribute("href")
    assert href is not None and unquote(href) == link  # the page let the e1c: link through
    await shot(reception, "onec-pop")
    await office.finish(frames[ringing:])

    def written() -> list[dict]:
        return [c for c in base.calls() if c["Ref_Key"] == document_ref(call_id)]

    await eventually(written, seconds=20)
    [document] = written()
    assert document["АбонентКонтакт"] == base.contact
    assert document["АбонентПредставление"] == "Мария Сидорова (საქართველოს ფოსტა)"
    assert document["Входящий"] is True and document["Описание"].startswith("Итог: отвечен")
