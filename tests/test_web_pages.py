"""The pages a newcomer expects beyond the desk, in a real Chromium (Playwright): clients
and their contacts, calls and SMS; users for admins; one's own time zone. And the page
items the newcomer's day found wrong: numbers formatted one way for every country, times
in the user's locale and time zone, translated error reasons and a banner that clears,
counts that say what they count and stay live, a transfer to a busy manager, reports
whose columns add up, a fax marked as one, a shared number, an operator's desk that fits
1366×768. Screenshots go to tests/artifacts/ (pages-*.png), in English and Russian.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from e2e_helpers import (
    ARTIFACTS,
    BROWSER_TESTS,
    MANAGER_NAME,
    PASSWORD,
    VIEWPORT,
    NewPage,
    Office,
    Page,
    api_get,
    browser,
    card,
    eventually,
    expect,
    fresh,
    index_of,
    log_row,
    new_page,
    replay,
    sign_in,
    start_office,
    stop_office,
    task_row,
    token_of,
)
from sqlalchemy import select

from cti import auth
from cti.db.models import AuditEntry, SmsMessage
from gsm_modem.emulator import ModemEmulator

pytestmark = BROWSER_TESTS

MOSCOW = ZoneInfo("Europe/Moscow")  # the office's time zone (ServerConfig's default)
ADMIN = "root"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def office(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Office]:
    """The office of e2e_helpers with a GSM modem (operators text from the desk), and
    an administrator besides the people of e2e_helpers.USERS."""
    async with ModemEmulator(send_delay=0.05) as modem:
        office = await start_office(tmp_path_factory.mktemp("pages"), modem_port=modem.path)
        async with office.service.sessions() as session:
            await auth.create_user(
                session, ADMIN, password=PASSWORD, role="admin", display_name="Администратор"
            )
            await session.commit()
        yield office
        await stop_office(office)


async def screen(page: Page, name: str) -> None:
    """What the user sees at 1366×768, from the top of the page."""
    ARTIFACTS.mkdir(exist_ok=True)
    await page.evaluate("document.querySelector('main').scrollTo(0, 0)")
    await page.screenshot(path=str(ARTIFACTS / f"pages-{name}.png"))


def calling_from(frames: list[dict[str, str]], old: str, new: str) -> list[dict[str, str]]:
    """A transcript's caller moved to another number: every field that says ``old``."""
    return [{key: value.replace(old, new) for key, value in frame.items()} for frame in frames]


def busy_line(extension: str, uid: str) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """An extension's phone off the hook (a call to the echo test), and then hung up."""
    channel = {
        "Channel": f"SIP/{extension}-0000fa{uid[-2:]}",
        "CallerIDNum": extension,
        "CallerIDName": extension,
        "ConnectedLineNum": "<unknown>",
        "ConnectedLineName": "<unknown>",
        "Context": "internal",
        "Exten": "*43",
        "Priority": "1",
        "Uniqueid": uid,
        "Linkedid": uid,
        "ChannelState": "6",
        "ChannelStateDesc": "Up",
    }
    return (
        [{"Event": "Newchannel", **channel}],
        [{"Event": "Hangup", **channel, "Cause": "16", "Cause-txt": "Normal Clearing"}],
    )


def idle_device(extension: str) -> dict[str, str]:
    return {"Event": "DeviceStateChange", "Device": f"SIP/{extension}", "State": "NOT_INUSE"}


def nav(page: Page):
    return page.get_by_role("navigation", name=re.compile("Pages|Разделы"))


def moscow(iso: str, pattern: str) -> str:
    return datetime.fromisoformat(iso).astimezone(MOSCOW).strftime(pattern)


# -- clients ------------------------------------------------------------------------------


async def test_an_operator_finds_a_client_sees_its_calls_and_sms_and_edits_it(
    new_page: NewPage, office: Office
) -> None:
    call = await replay(office, "sip_ringgroup_answered", 301)  # ООО «Ромашка», 102 answered
    async with office.service.sessions() as session:
        session.add(
            SmsMessage(
                id="e2e-pages-sms-1",
                direction="in",
                number="+78125550104",
                text="Счёт получили, спасибо!",
                status="received",
                routed_extension="102",
            )
        )
        await session.commit()
    page = await new_page()
    await sign_in(page, "giorgi")  # an operator, the client's manager
    await nav(page).get_by_role("link", name="Clients").click()
    assert page.url.endswith("#clients")
    await page.get_by_role("searchbox", name="Name, contact or number").fill("ромашка")
    await page.get_by_role("button", name="Search", exact=True).click()
    item = page.locator("#clients-list li.client-item").filter(has_text="ООО «Ромашка»")
    await expect(item).to_have_count(1)
    await expect(item.locator(".client-line")).to_have_text(
        f"company · +7 812 555 01 04 · manager: {MANAGER_NAME}"
    )
    # A number finds it too, however it is written.
    await page.get_by_role("searchbox").fill("8 (812) 555-01-04")
    await page.get_by_role("button", name="Search", exact=True).click()
    await expect(page.locator("#clients-list li.client-item")).to_have_count(1)
    await item.get_by_role("button", name="ООО «Ромашка»").click()

    detail = page.locator("#client-detail")
    await expect(detail.locator("#client-title")).to_have_text("ООО «Ромашка»")
    await expect(page.get_by_label("Name", exact=True)).to_have_value("ООО «Ромашка»")
    await expect(detail.locator("#client-phone-0")).to_have_value("+7 812 555 01 04")
    # An operator sees the manager but does not choose one: a supervisor does.
    manager = page.get_by_label("Manager", exact=True)
    await expect(manager).to_be_disabled()
    await expect(manager.locator("option:checked")).to_have_text(f"102 · {MANAGER_NAME}")
    await expect(detail.locator("#client-manager-note")).to_have_text(
        "A supervisor sets the responsible manager."
    )
    await expect(detail.locator(".contact-item")).to_have_text(re.compile("Сергей Волков"))
    calls = detail.locator(f'#client-calls li[data-call-id="{call["id"]}"]')
    await expect(calls.locator(".call-outcome")).to_have_text("answered")
    await expect(calls.locator("button.phone")).to_have_text("+7 812 555 01 04")
    sms = detail.locator('#client-sms li[data-sms-id="e2e-pages-sms-1"]')
    await expect(sms.locator(".sms-text")).to_have_text("Счёт получили, спасибо!")

    # Edit: notes, a second number, then a contact with a phone.
    await page.get_by_label("Notes").fill("Доставка только после 14:00")
    await page.get_by_role("button", name="Add a number").click()
    await expect(detail.locator("#client-phone-1")).to_be_focused()
    await page.keyboard.type("+7 812 555-77-88")
    await detail.locator("#client-phone-1-label").fill("склад")
    await page.get_by_role("button", name="Save", exact=True).click()
    await expect(detail.locator("#client-result")).to_have_text("ООО «Ромашка» was saved.")
    await expect(detail.locator("#client-phone-1")).to_have_value("+7 812 555 77 88")
    contact = page.locator("#contact-form")
    await contact.get_by_placeholder("Contact's name").fill("Ольга Ким")
    await contact.get_by_placeholder("Position").fill("бухгалтер")
    await contact.get_by_placeholder("Phone number").fill("+7 921 000-11-22")
    await contact.get_by_role("button", name="Add", exact=True).click()
    added = detail.locator(".contact-item").filter(has_text="Ольга Ким")
    await expect(added.locator("button.phone")).to_have_text("+7 921 000 11 22")
    await expect(detail.locator("#client-result")).to_have_text("The contact was added.")
    await screen(page, "client-en")

    token = await token_of(page)
    [found] = (await api_get(office, token, "/api/clients", q="Ромашка"))["clients"]
    stored = await api_get(office, token, f"/api/clients/{found['id']}")
    assert stored["notes"] == "Доставка только после 14:00"
    assert [(p["number"], p["label"]) for p in stored["phones"]] == [
        ("+78125550104", "офис"),
        ("+78125557788", "склад"),
    ]
    assert stored["manager"]["extension"] == "102"  # the operator's save left it alone
    [olga] = [c for c in stored["contacts"] if c["name"] == "Ольга Ким"]
    assert olga["position"] == "бухгалтер" and olga["phones"][0]["number"] == "+79210001122"

    # The new contact's number pops as this client, the contact named.
    lookup = await api_get(office, token, "/api/lookup", number="+79210001122")
    assert lookup["match"]["client_name"] == "ООО «Ромашка»"
    assert lookup["match"]["contact_name"] == "Ольга Ким"

    # Removing the contact again.
    await added.get_by_role("button", name="Remove").click()
    await expect(detail.locator(".contact-item").filter(has_text="Ольга Ким")).to_have_count(0)
    await expect(detail.locator("#client-result")).to_have_text("The contact was removed.")

    # In Russian, the same page.
    await page.get_by_role("button", name="Русский").click()
    await expect(page.locator("#clients-title")).to_have_text("Клиенты")
    await expect(page.get_by_label("Название", exact=True)).to_have_value("ООО «Ромашка»")
    await expect(detail.locator("#client-manager-note")).to_have_text(
        "Ответственного менеджера назначает руководитель."
    )
    await screen(page, "client-ru")


async def test_a_supervisor_changes_the_manager_and_it_is_audited(
    new_page: NewPage, office: Office
) -> None:
    page = await new_page()
    await sign_in(page, "vera")
    await page.goto(f"{office.url}/#clients")
    await page.get_by_role("searchbox").fill("Кузнецова")
    await page.get_by_role("searchbox").press("Enter")
    await page.get_by_role("button", name="Ирина Кузнецова").click()
    manager = page.get_by_label("Manager", exact=True)
    await expect(manager).to_be_enabled()
    await expect(page.locator("#client-manager-note")).to_have_count(0)
    await manager.select_option("102")
    await page.get_by_role("button", name="Save", exact=True).click()
    await expect(page.locator("#client-result")).to_have_text("Ирина Кузнецова was saved.")
    token = await token_of(page)
    [client] = (await api_get(office, token, "/api/clients", q="Кузнецова"))["clients"]
    assert client["manager"]["extension"] == "102"
    async with office.service.sessions() as session:
        entries = list(
            await session.scalars(
                select(AuditEntry).where(AuditEntry.target == f"client:{client['id']}")
            )
        )
    [entry] = entries
    assert entry.action == "client.manager" and entry.username == "vera"
    assert entry.details["to"]["extension"] == "102"
    # Put it back for the other tests: Irina is 101's.
    await manager.select_option("101")
    await page.get_by_role("button", name="Save", exact=True).click()
    await expect(page.locator("#client-result")).to_have_text("Ирина Кузнецова was saved.")


async def test_a_number_on_two_clients_warns_and_the_pop_shows_it_shared(
    new_page: NewPage, office: Office
) -> None:
    shared = "+78125550199"
    page = await new_page()
    await sign_in(page, "vera")
    await page.goto(f"{office.url}/#clients")
    for name in ("ООО «Первый»", "ООО «Второй»"):
        await page.get_by_role("button", name="New client").click()
        await expect(page.get_by_label("Name", exact=True)).to_be_focused()
        await page.keyboard.type(name)
        await page.get_by_role("button", name="Add a number").click()
        await page.keyboard.type("8 812 555-01-99")
        await page.get_by_role("button", name="Save", exact=True).click()
    # The second save says the number is someone else's too, and names who.
    await expect(page.locator("#client-result")).to_have_text(
        "ООО «Второй» was saved; a number of it belongs to another client too."
    )
    await expect(page.locator("#client-shared")).to_contain_text("+7 812 555 01 99: ООО «Первый»")
    await screen(page, "client-shared-en")

    # A call from it: the pop names both and picks neither.
    reception = await new_page()
    await sign_in(reception, "rita")
    frames = calling_from(fresh("sip_inbound_missed", seq=302), "88125550102", "88125550199")
    ringing = index_of(frames, "DialBegin", DestChannel="SIP/101")
    await office.play(frames[: ringing + 1])
    await eventually(lambda: office.live_call(shared))
    pop = card(reception, office.live_call(shared).id)
    await expect(pop.locator(".lookup-shared")).to_have_text(
        "This number belongs to several clients: ООО «Первый», ООО «Второй»"
    )
    await expect(pop.locator(".client-name")).to_have_count(0)
    await office.finish(frames[ringing + 1 :])


# -- numbers, times, errors ---------------------------------------------------------------


async def test_numbers_of_every_country_look_the_same_everywhere(
    new_page: NewPage, office: Office
) -> None:
    shown = {"+442071234567": "+44 20 7123 4567", "+85523880123": "+855 23 880 123"}
    boss = await new_page()
    await sign_in(boss, "vera")
    reception = await new_page()
    await sign_in(reception, "rita")
    for seq, (number, text) in enumerate(shown.items(), start=310):
        frames = calling_from(fresh("sip_inbound_missed", seq=seq), "88125550102", number)
        ringing = index_of(frames, "DialBegin", DestChannel="SIP/101")
        await office.play(frames[: ringing + 1])
        await eventually(lambda number=number: office.live_call(number))
        call_id = office.live_call(number).id
        await expect(card(reception, call_id).locator(".caller .phone-text")).to_have_text(text)
        await office.finish(frames[ringing + 1 :])
        await office.service.call_store.flush()

        await boss.goto(f"{office.url}/#log")
        await expect(log_row(boss, call_id).locator(".log-number button.phone")).to_have_text(text)
        await boss.goto(f"{office.url}/#worklist")
        row = task_row(boss, number)
        await expect(row.locator("button.phone")).to_have_text(text)
        await expect(row.get_by_role("button", name=f"Call back {text}")).to_be_visible()


async def test_times_are_in_the_users_locale_and_time_zone(
    new_page: NewPage, office: Office
) -> None:
    call = await replay(office, "sip_inbound_answered", 320)
    started = call["started_at"]
    # A browser in Tbilisi (UTC+4): the office's Moscow time is shown, not the browser's.
    page = await new_page(locale="ru-RU", timezone_id="Asia/Tbilisi")
    await sign_in(page, "vera")
    await expect(page.locator("html")).to_have_attribute("lang", "ru")  # the browser's language
    await page.goto(f"{office.url}/#log")
    when = log_row(page, call["id"]).locator(".log-time time")
    await expect(when).to_have_text(moscow(started, "%d.%m.%Y, %H:%M"))  # 01.12.2026, 18:44

    # The English page of a Russian office: day first, 24 hours, even in an en-US browser.
    english = await new_page(locale="en-US", timezone_id="America/New_York")
    await sign_in(english, "vera")
    await english.goto(f"{office.url}/#log")
    when = log_row(english, call["id"]).locator(".log-time time")
    await expect(when).to_have_text(moscow(started, "%d/%m/%Y, %H:%M"))

    # Vera chooses Tbilisi for herself: every time moves an hour on, here and next time.
    await nav(english).get_by_role("link", name="Settings").click()
    zone = english.get_by_label("Time zone")
    await expect(zone).to_have_attribute("placeholder", "the office's: Europe/Moscow")
    await zone.fill("Asia/Tbilis")  # a typo
    await english.get_by_role("button", name="Save", exact=True).click()
    await expect(english.locator("#settings-result")).to_have_text(
        re.compile("Asia/Tbilis.*not a time zone", re.I)
    )
    await zone.fill("Asia/Tbilisi")
    await english.get_by_role("button", name="Save", exact=True).click()
    await expect(english.locator("#settings-result")).to_have_text(
        "Saved: times are shown in this time zone."
    )
    tbilisi = datetime.fromisoformat(started).astimezone(ZoneInfo("Asia/Tbilisi"))
    await english.goto(f"{office.url}/#log")
    await expect(when).to_have_text(tbilisi.strftime("%d/%m/%Y, %H:%M"))
    again = await new_page(locale="en-US")
    await sign_in(again, "vera")
    await again.goto(f"{office.url}/#log")
    await expect(log_row(again, call["id"]).locator(".log-time time")).to_have_text(
        tbilisi.strftime("%d/%m/%Y, %H:%M")
    )
    async with office.service.sessions() as session:
        vera = await auth.find_user(session, "vera")
        assert vera.time_zone == "Asia/Tbilisi"
        vera.time_zone = None  # back to the office's, for the other tests
        await session.commit()


async def test_a_dial_error_is_translated_and_the_banner_clears(
    new_page: NewPage, office: Office
) -> None:
    page = await new_page(locale="ru-RU")
    await sign_in(page, "anna")
    await expect(page.locator("html")).to_have_attribute("lang", "ru")
    await page.locator("#dial-number").fill("hello")
    await page.locator("#dial-number").press("Enter")
    banner = page.locator("#dial-banner")
    await expect(page.locator("#dial-status")).to_have_text(
        "Не удалось позвонить на hello: это не номер телефона"
    )
    await expect(banner).to_have_attribute("data-kind", "error")
    await page.locator("#dial-status-close").click()  # dismissed
    await expect(banner).to_be_hidden()

    await page.locator("#dial-number").fill("hello")
    await page.locator("#dial-number").press("Enter")
    await expect(banner).to_be_visible()
    await nav(page).get_by_role("link", name="Журнал звонков").click()  # another page
    await expect(banner).to_be_hidden()
    await nav(page).get_by_role("link", name="Рабочее место").click()
    await expect(banner).to_be_hidden()


# -- counts, transfer, reports, faxes -----------------------------------------------------


async def test_the_callbacks_table_updates_live_and_each_count_says_what_it_counts(
    new_page: NewPage, office: Office
) -> None:
    boss = await new_page()
    await sign_in(boss, "vera")
    await nav(boss).get_by_role("link", name=re.compile("^Callbacks")).click()
    await expect(boss.locator("#worklist-table")).to_have_attribute("data-state", "ready")
    anna = await new_page()
    await sign_in(anna, "anna")
    lists: list[str] = []
    boss.on("request", lambda r: lists.append(r.url) if "/api/tasks" in r.url else None)

    call = await replay(office, "busy_extension", 330)  # a client of 101's; 101 was busy
    number = call["external_number"]
    # The open table gets the row without anyone pressing Refresh; the badge agrees.
    await expect(task_row(boss, number)).to_have_count(1)
    assert lists, "the table was reloaded because of the live feed"
    rows = boss.locator("#worklist-rows tr.task-row")
    await expect(boss.locator("#worklist-count")).to_have_text(str(await rows.count()))
    title = await boss.locator("#nav-worklist").get_attribute("title")
    assert title and "numbers to call back" in title

    # My calls → Missed lists every missed call, and says how it differs from Callbacks.
    await anna.locator("#calls-refresh").click()
    await anna.get_by_role("tab", name=re.compile("Missed")).click()
    await expect(anna.locator(f'#missed-calls li[data-call-id="{call["id"]}"]')).to_have_count(1)
    await expect(anna.locator("#missed-note")).to_contain_text("Callbacks counts the numbers")


async def test_the_transfer_to_a_busy_manager_says_so_and_offers_a_free_colleague(
    new_page: NewPage, office: Office
) -> None:
    reception = await new_page()
    await sign_in(reception, "rita")
    off_hook, hung_up = busy_line("102", "1795900000.91")
    await office.play([*off_hook, idle_device("103")])
    line = reception.locator('#lines li[data-extension="102"]')
    await expect(line).to_have_class(re.compile(r"\bls-busy\b"))
    await expect(reception.locator('#lines li[data-extension="103"]')).to_have_class(
        re.compile(r"\bls-idle\b")
    )

    frames = fresh("sip_inbound_answered", seq=340)  # the manager's client; 101 answers
    answered = index_of(frames, "BridgeEnter", Channel="SIP/101")
    await office.play(frames[: answered + 1])
    await eventually(
        lambda: (call := office.live_call("+78125550101")) and call.answered_by == "101"
    )
    pop = card(reception, office.live_call("+78125550101").id)
    busy = pop.get_by_role("button", name=f"Transfer to {MANAGER_NAME} (102, busy now)")
    await expect(busy).to_be_enabled()  # the caller may wait for the manager
    await expect(busy).not_to_have_class(re.compile("btn-primary"))
    free = pop.get_by_role("button", name="Transfer to Вера Орлова (103, free)")
    await expect(free).to_have_class(re.compile("btn-primary"))
    await screen(reception, "transfer-busy-en")
    before = len(office.actions("Redirect"))
    await free.click()
    await eventually(lambda: len(office.actions("Redirect")) > before)
    assert office.actions("Redirect")[-1]["Exten"] == "103"
    await expect(pop.locator(".transfer-result")).to_have_text("Sent to 103.")

    # The manager hangs up: the busy mark goes, the other button with it.
    await office.play(hung_up)
    await expect(line).to_have_class(re.compile(r"\bls-idle\b"))
    await office.finish(frames[answered + 1 :])


async def test_report_columns_add_up_and_the_legend_says_what_each_is(
    new_page: NewPage, office: Office
) -> None:
    await replay(office, "sip_click_to_dial", 350)  # outgoing from 101
    await replay(office, "sip_ringgroup_answered", 351)  # 101 rang, 102 answered
    await replay(office, "sip_internal_call", 352)  # 101 -> 102
    page = await new_page()
    await sign_in(page, "vera")
    await nav(page).get_by_role("link", name="Reports").click()
    await page.get_by_label("Grouping").select_option("operator")
    async with page.expect_response(lambda r: "group=operator" in r.url) as answer:
        await page.locator("#report-apply").click()
    assert (await answer.value).status == 200
    parts = ["answered", "answered_elsewhere", "missed", "not_answered", "outgoing"]
    rows = page.locator("#report-rows tr.report-row")
    await expect(rows.first).to_be_visible()
    for index in range(await rows.count()):
        row = rows.nth(index)
        calls = int(await row.locator('[data-col="calls"]').inner_text())
        cells = [await row.locator(f'[data-col="{part}"]').inner_text() for part in parts]
        # "outgoing" reads "3 (2 answered)": the first number is the count.
        assert calls == sum(int(re.match(r"\d+", cell).group()) for cell in cells), cells
    anna = rows.filter(has_text="101 · Анна Петрова")
    assert int(await anna.locator('[data-col="answered_elsewhere"]').inner_text()) >= 1
    assert re.match(r"[1-9]", await anna.locator('[data-col="outgoing"]').inner_text())
    notes = page.locator("#report-notes")
    for heading in ("Answered", "By a colleague", "Missed", "Not taken", "Outgoing"):
        await expect(notes.locator("dt", has_text=heading).first).to_be_visible()
    await expect(notes).to_contain_text("a colleague answered")
    await screen(page, "reports-en")


async def test_a_fax_call_is_marked_as_a_fax(new_page: NewPage, office: Office) -> None:
    call = await replay(office, "fax_receive", 360)
    assert call["fax"]["pages"] == 2
    page = await new_page()
    await sign_in(page, "vera")
    await page.goto(f"{office.url}/#log")
    await expect(log_row(page, call["id"]).locator(".fax-mark")).to_have_text("fax, 2 p. · ")


# -- users and settings -------------------------------------------------------------------


async def test_an_admin_manages_users(new_page: NewPage, office: Office) -> None:
    page = await new_page()
    await sign_in(page, ADMIN)
    await nav(page).get_by_role("link", name="Users").click()
    assert page.url.endswith("#users")
    rows = page.locator("#users-rows tr.user-row")
    await expect(rows.filter(has_text="anna")).to_have_count(1)

    # A new operator, on an extension another user has: refused, with the reason.
    form = page.locator("#user-add-form")
    await form.get_by_label("Login").fill("olga")
    await form.get_by_label("Full name").fill("Ольга Ким")
    await form.get_by_label("Desk phone").fill("101")
    await form.get_by_role("button", name="Add user").click()
    await expect(page.locator("#users-result")).to_have_text(
        "Not saved: that extension is another user's phone"
    )
    await form.get_by_label("Desk phone").fill("104")
    await form.get_by_label("Web password (optional)").fill("olga's first password")
    await form.get_by_role("button", name="Add user").click()
    await expect(page.locator("#users-created")).to_contain_text("olga was added.")
    token = await page.locator("#users-created-token").inner_text()
    assert len(token) > 20
    olga = rows.filter(has=page.locator("td.user-login", has_text=re.compile("^olga$")))
    await expect(olga).to_contain_text("Ольга Ким")
    await expect(olga).to_contain_text("104")
    await screen(page, "users-en")

    # She signs in; the admin makes her a supervisor in Tbilisi, then resets her password:
    # her browser session ends.
    her = await new_page()
    await her.get_by_label("User name").fill("olga")
    await her.locator("#login-password").fill("olga's first password")
    await her.locator("#login-password").press("Enter")
    await expect(her.locator("#feed-status")).to_have_attribute("data-state", "live")
    await olga.get_by_role("button", name="Edit").click()
    edit = page.locator("#user-edit-form")
    await edit.get_by_label("Role").select_option("supervisor")
    await edit.get_by_label("Time zone").fill("Asia/Tbilisi")
    await edit.get_by_role("button", name="Save").click()
    await expect(page.locator("#users-result")).to_have_text("olga was saved.")
    await expect(olga).to_contain_text("supervisor")
    await expect(olga).to_contain_text("Asia/Tbilisi")
    await olga.get_by_role("button", name="Edit").click()
    await edit.get_by_label("New password", exact=True).fill("olga's second password")
    await edit.get_by_role("button", name="Set the password").click()
    await expect(page.locator("#users-result")).to_have_text(
        "The password of olga was set; 1 browser sessions were signed out."
    )
    await expect(her.locator("#login-view")).to_be_visible()

    # Sign out everywhere revokes her API token; then she is disabled.
    await edit.get_by_role("button", name="Sign out everywhere").click()
    await expect(page.locator("#users-result")).to_have_text(
        re.compile(r"^[1-9]\d* tokens of olga")
    )
    await edit.get_by_label("Active").uncheck()
    await edit.get_by_role("button", name="Save").click()
    await expect(olga).to_contain_text("disabled")
    async with office.service.sessions() as session:
        stored = await auth.find_user(session, "olga")
        assert stored.role == "supervisor" and stored.time_zone == "Asia/Tbilisi"
        assert not stored.is_active and stored.extension == "104"
        assert auth.verify_password(stored.password_hash, "olga's second password")
        assert (await auth.find_token(session, token)).revoked_at is not None

    await page.get_by_role("button", name="Русский").click()
    await expect(page.locator("#users-title")).to_have_text("Сотрудники")
    await expect(olga).to_contain_text("отключён")
    await screen(page, "users-ru")


async def test_only_admins_see_the_users_page(new_page: NewPage, office: Office) -> None:
    page = await new_page()
    await sign_in(page, "vera")
    await expect(nav(page).get_by_role("link", name="Users")).to_be_hidden()
    await expect(nav(page).get_by_role("link", name="Settings")).to_be_visible()
    await page.goto(f"{office.url}/#users")
    await expect(page.locator("#users-view")).to_be_hidden()
    await expect(page.locator("#desk-view")).to_be_visible()


# -- the screens people work on, at 1366×768 ---------------------------------------------


async def test_the_operators_desk_fits_1366_by_768(new_page: NewPage, office: Office) -> None:
    page = await new_page()
    await sign_in(page, "anna")
    await page.locator("#calls-refresh").click()
    await expect(page.locator("#recent-calls li").first).to_be_visible()
    # A text sent from the desk: the form and its result line are on the screen.
    await page.get_by_label("To", exact=True).fill("+7 916 123-45-67")
    await page.get_by_label("Message", exact=True).fill("Добрый день! Счёт отправлен.")
    await page.get_by_role("button", name="Send", exact=True).click()
    await expect(page.locator("#sms-result")).to_be_visible()

    async def on_screen() -> None:
        for element in ("#dial-form", ".pops-panel", "#calls-panel", "#sms-form", "#sms-result"):
            box = await page.locator(element).bounding_box()
            assert box, element
            assert 0 <= box["y"] and box["y"] + box["height"] <= VIEWPORT["height"], (element, box)
            assert 0 <= box["x"] and box["x"] + box["width"] <= VIEWPORT["width"], (element, box)

    await on_screen()
    await screen(page, "desk-en")
    await page.get_by_role("button", name="Русский").click()
    await expect(page.locator("#sms-title")).to_have_text("Отправить SMS")
    await on_screen()
    await screen(page, "desk-ru")


async def test_the_call_log_screens(new_page: NewPage, office: Office) -> None:
    page = await new_page()
    await sign_in(page, "vera")
    await page.goto(f"{office.url}/#log")
    await expect(page.locator("#log-table")).to_have_attribute("data-state", "ready")
    await screen(page, "log-en")
    await page.get_by_role("button", name="Русский").click()
    await expect(page.locator("#log-title")).to_have_text("Журнал звонков")
    await screen(page, "log-ru")
