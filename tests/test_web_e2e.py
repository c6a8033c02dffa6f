"""The operator desktop end to end: a real headless Chromium (Playwright) against the
service on a real port, fed by the AMI simulator replaying the lab's recorded calls.

One browser and one service serve the whole module; every test gets fresh browser
contexts (so fresh sessionStorage) and replays its calls with identities of its own.
Screenshots of the key steps go to tests/artifacts/.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import shutil
import struct
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import pytest_asyncio
from aiohttp import ClientSession
from e2e_helpers import (
    ARTIFACTS,
    BROWSER_TESTS,
    BUSY_CLIENT_NAME,
    BUSY_CLIENT_NUMBER,
    LAB_WAV,
    MANAGER_NAME,
    SMS_CLIENT_NAME,
    SMS_CLIENT_NUMBER,
    USERS,
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
    log_rows,
    new_page,
    office,
    replay,
    shot,
    sign_in,
    start_office,
    stop_office,
    task_row,
    token_of,
)
from lab import EXPECTED
from sqlalchemy import select

from cti import auth
from cti.clients.models import CallbackTask
from cti.db.models import CallRecord, Recording
from cti.phone import dialable
from gsm_modem.emulator import ModemEmulator
from gsm_modem.pdu import decode, encode_deliver, sms_parts_needed

pytestmark = BROWSER_TESTS


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def modem() -> AsyncIterator[ModemEmulator]:
    """The SMS office's GSM modem. A status report comes well after the last part of a
    message is sent: the outbox only matches reports to messages already ``sent``."""
    async with ModemEmulator(send_delay=0.05, status_report_delay=0.5) as emulator:
        yield emulator


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sms_office(
    tmp_path_factory: pytest.TempPathFactory, modem: ModemEmulator
) -> AsyncIterator[Office]:
    """A second office, the same but with a GSM modem: there the page may send SMS."""
    office = await start_office(tmp_path_factory.mktemp("e2e-sms"), modem_port=modem.path)
    yield office
    await stop_office(office)


# -- the page itself -------------------------------------------------------------------


async def test_the_page_and_its_assets_are_public_and_locked_down(office: Office) -> None:
    async with ClientSession() as http:
        async with http.get(f"{office.url}/") as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/html; charset=utf-8"
            assert response.headers["Cache-Control"] == "no-cache"
            csp = response.headers["Content-Security-Policy"]
            assert "default-src 'self'" in csp and "connect-src 'self' ws: wss:" in csp
            assert "unsafe-inline" not in csp
            html = await response.text()
            assert '<script type="module" src="/static/app.js">' in html
            assert "<script>" not in html and " style=" not in html  # nothing inline
        for name, kind in [("app.js", "text/javascript"), ("style.css", "text/css")]:
            async with http.get(f"{office.url}/static/{name}") as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith(kind)
                assert response.headers["Cache-Control"] == "no-cache"
                assert "Content-Security-Policy" in response.headers
        for path in ["/static/nope.js", "/static/..%2Fapp.py", "/static/__init__.py"]:
            async with http.get(f"{office.url}{path}") as response:
                assert response.status == 404, path


async def test_a_wrong_password_is_refused_and_logout_ends_the_session(
    new_page: NewPage, office: Office
) -> None:
    page = await new_page()
    await page.locator("#login-username").fill("anna")
    await page.locator("#login-password").fill("not the password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#login-error")).to_have_text("Wrong user name or password.")
    await sign_in(page, "anna")
    token = await page.evaluate("JSON.parse(sessionStorage.getItem('cti.session')).token")
    assert token not in page.url
    await expect(page.locator("#user-name")).to_have_text(USERS["anna"]["display_name"])
    await page.get_by_role("button", name="Log out").click()
    await expect(page.locator("#login-view")).to_be_visible()
    assert await page.evaluate("sessionStorage.getItem('cti.session')") is None
    async with ClientSession() as http:
        headers = {"Authorization": f"Bearer {token}"}
        async with http.get(f"{office.url}/api/me", headers=headers) as response:
            assert response.status == 401  # the session token is revoked


async def test_the_feed_client_keeps_the_largest_seq_and_drops_repeats(new_page: NewPage) -> None:
    page = await new_page()
    result = await page.evaluate(
        """async () => {
            const {Feed} = await import("/static/feed.js");
            const seen = [];
            const feed = new Feed({
                token: "unused", onFrame: (f) => seen.push(`${f.type}:${f.seq}`),
                onStatus: () => {}, onUnauthorized: () => {},
            });
            feed.receive({type: "hello", seq: 10, stream: "abc", resumed: false, heartbeat: 5});
            feed.receive({type: "resync", seq: 10, reason: "connect", state: {}});
            feed.receive({type: "pop", seq: 12, data: {}});
            feed.receive({type: "pop", seq: 12, data: {}});  // a repeat
            feed.receive({type: "lines", seq: 11, data: {}});  // older than what was seen
            feed.receive({type: "heartbeat", seq: 20});
            const before = feed.url();
            feed.receive({type: "hello", seq: 3, stream: "def", resumed: false});  // restarted
            feed.receive({type: "pop", seq: 4, data: {}});
            clearTimeout(feed.watchdog);
            return {seen, before, after: feed.url()};
        }"""
    )
    assert result["seen"] == ["hello:10", "resync:10", "pop:12", "heartbeat:20", "hello:3", "pop:4"]
    assert result["before"].endswith("/ws?stream=abc&last_seq=20")
    assert result["after"].endswith("/ws?stream=def&last_seq=4")


async def test_a_silent_feed_is_dropped_and_resumed(new_page: NewPage) -> None:
    """Nothing for two heartbeats: the client gives up on the socket and resumes."""
    page = await new_page()
    await sign_in(page, "anna")
    result = await page.evaluate(
        """async () => {
            const {Feed} = await import("/static/feed.js");
            const token = JSON.parse(sessionStorage.getItem("cti.session")).token;
            const hellos = [], statuses = [];
            await new Promise((resolve, reject) => {
                setTimeout(() => reject(new Error("no second hello")), 10000);
                const feed = new Feed({
                    token,
                    onFrame: (frame) => {
                        if (frame.type !== "hello") return;
                        hellos.push(frame.resumed);
                        if (hellos.length === 1) {
                            feed.ws.onmessage = null;  // the server goes quiet
                            feed.heartbeat = 0.1;
                            feed.arm(200);
                        } else {
                            feed.stop();
                            resolve();
                        }
                    },
                    onStatus: (status) => statuses.push(status),
                    onUnauthorized: () => reject(new Error("unauthorized")),
                });
                feed.start();
            });
            return {hellos, statuses};
        }"""
    )
    assert result["hellos"] == [False, True]
    seen = result["statuses"]
    statuses = [s for i, s in enumerate(seen) if i == 0 or s != seen[i - 1]]
    assert statuses == ["connecting", "live", "reconnecting", "live", "offline"]


async def test_a_lost_pbx_link_is_shown_until_it_is_back(new_page: NewPage, office: Office) -> None:
    page = await new_page()
    await sign_in(page, "anna")
    banner = page.locator("#links-status")
    await expect(banner).to_be_hidden()
    secret = office.pbx.secret
    office.pbx.secret = "not-the-secret"  # the adapter's logins fail until it is put back
    try:
        office.pbx.drop_clients()
        await expect(banner).to_have_text("Phone system lab is not connected")
        await shot(page, "0-pbx-link-down")
    finally:
        office.pbx.secret = secret
    await eventually(lambda: office.adapter.connected)
    await expect(banner).to_be_hidden()


# -- 1. a ring group: both pop, 102 answers, the call ends ------------------------------


async def test_ring_group_pops_then_answered_elsewhere_then_ends(
    new_page: NewPage, office: Office
) -> None:
    operator = await new_page()
    await sign_in(operator, "anna")
    reception = await new_page()
    await sign_in(reception, "rita")

    frames = fresh("sip_ringgroup_answered", seq=101)
    ringing = index_of(frames, "Newstate", Channel="SIP/102", ChannelStateDesc="Up")
    answered = index_of(frames, "BridgeEnter", Channel="SIP/102")
    await office.play(frames[:ringing])
    await eventually(lambda: office.live_call("+78125550104"))
    call_id = office.live_call("+78125550104").id

    for page in (operator, reception):
        pop = card(page, call_id)
        await expect(pop).to_have_count(1)
        await expect(pop.locator(".badge")).to_have_text("Ringing: 101, 102")
        await expect(pop.locator(".caller")).to_contain_text("+7 812 555 01 04")
        await expect(pop.locator(".client-name")).to_have_text("ООО «Ромашка»")
        await expect(pop.locator(".contact")).to_have_text("Сергей Волков")
        await expect(pop.locator(".manager-name")).to_have_text(MANAGER_NAME)
        await expect(pop.locator(".manager-ext")).to_contain_text("102")
        await expect(pop.locator(".manager .line-state")).to_be_visible()
    # The operator dials from the pop; the receptionist (no phone of her own) cannot.
    await expect(card(operator, call_id).locator(".caller button.phone")).to_be_visible()
    await expect(card(reception, call_id).locator(".caller button.phone")).to_have_count(0)
    await expect(card(reception, call_id).locator("button.transfer")).to_have_text(
        f"Transfer to {MANAGER_NAME} (102)"
    )
    for page in (operator, reception):  # the colleagues panel, with names and states
        for extension, user in (("101", "anna"), ("102", "giorgi")):
            line = page.locator(f'#lines li[data-extension="{extension}"]')
            await expect(line).to_have_class(re.compile(r"\bls-ringing\b"))
            await expect(line.locator(".line-name")).to_contain_text(USERS[user]["display_name"])
            await expect(line.locator(".line-state-text")).to_have_text("ringing")
    await shot(operator, "1-operator-ringing")
    await shot(reception, "1-reception-ringing")

    await office.play(frames[ringing : answered + 1])
    await expect(card(reception, call_id).locator(".badge")).to_have_text(
        re.compile("answered by 102", re.IGNORECASE)
    )
    await expect(card(operator, call_id)).to_have_count(0)  # someone else took it
    await expect(operator.locator("#pops-empty")).to_be_visible()
    await expect(reception.locator('#lines li[data-extension="102"]')).to_have_class(
        re.compile(r"\bls-busy\b")
    )
    await expect(reception.locator('#lines li[data-extension="101"]')).to_have_class(
        re.compile(r"\bls-idle\b")
    )
    await expect(card(reception, call_id).locator(".manager .line-state")).to_have_text("busy")
    await shot(reception, "1-reception-answered-by-102")
    await shot(operator, "1-operator-closed")

    await office.finish(frames[answered + 1 :])
    await expect(card(reception, call_id)).to_have_count(0)
    await expect(reception.locator("#pops-empty")).to_be_visible()
    await shot(reception, "1-reception-ended")


# -- 2. click-to-dial ------------------------------------------------------------------


async def test_clicking_a_number_dials_it_from_the_operators_phone(
    new_page: NewPage, office: Office
) -> None:
    page = await new_page()
    await sign_in(page, "anna")
    await office.finish(fresh("sip_inbound_missed", seq=102))  # +78125550102, missed by 101
    await office.service.call_store.flush()
    await page.locator("#calls-refresh").click()
    await page.get_by_role("tab", name=re.compile("Missed")).click()
    number = page.locator('#missed-calls button.phone[data-number="+78125550102"]').first
    await expect(number).to_have_text("+7 812 555 01 02")
    await expect(page.locator("#missed-count")).not_to_have_text("")
    await shot(page, "2-missed-calls")
    before = len(office.actions("Originate"))
    await number.click()
    await eventually(lambda: len(office.actions("Originate")) > before)
    [originate] = office.actions("Originate")[before:]
    assert originate["Channel"] == "PJSIP/101"
    assert originate["Exten"] == dialable("+78125550102", "RU") == "88125550102"
    assert originate["Context"] == "from-internal"
    status = page.locator("#dial-status")
    await expect(status).to_have_attribute("data-kind", "ok")  # the simulator's phone answered
    await expect(status).to_contain_text("+7 812 555 01 02")
    await shot(page, "2-dialled")


# -- 3. the feed drops mid-call and resumes ----------------------------------------------


async def test_a_reconnect_mid_call_shows_the_answer_once(
    new_page: NewPage, office: Office
) -> None:
    page = await new_page(spy=True)
    received: list[dict] = []
    page.on(
        "websocket",
        lambda ws: ws.on(
            "framereceived",
            lambda payload: (
                received.append(json.loads(payload)) if isinstance(payload, str) else None
            ),
        ),
    )
    await sign_in(page, "anna")
    frames = fresh("sip_inbound_answered", seq=103)  # rings 101 only, 101 answers
    ringing = index_of(frames, "Newstate", Channel="SIP/101", ChannelStateDesc="Up")
    answered = index_of(frames, "BridgeEnter", Channel="SIP/101")
    await office.play(frames[:ringing])
    await eventually(lambda: office.live_call("+78125550101"))
    call_id = office.live_call("+78125550101").id
    pop = card(page, call_id)
    await expect(pop.locator(".badge")).to_have_text("Ringing: 101")
    await expect(pop.locator(".client-name")).to_have_text("საქართველოს ფოსტა")

    # Cut the feed and keep it down while the call is answered.
    await page.evaluate("() => { __e2e.blocked = true; __e2e.sockets.at(-1).close(); }")
    await expect(page.locator("#feed-status")).to_have_attribute("data-state", "reconnecting")
    sockets_before = await page.evaluate("() => __e2e.urls.length")
    await office.play(frames[ringing : answered + 1])
    await eventually(
        lambda: (call := office.live_call("+78125550101")) and call.answered_by == "101"
    )
    await eventually(lambda: office.service.live.board.cards[call_id].state == "answered")
    await expect(pop.locator(".badge")).to_have_text("Ringing: 101")  # the page cannot know
    await shot(page, "3-disconnected")

    await page.evaluate("() => { __e2e.blocked = false; }")
    await expect(page.locator("#feed-status")).to_have_attribute("data-state", "live")
    await expect(pop.locator(".badge")).to_have_text("Answered by you")
    await expect(page.locator("article.card")).to_have_count(1)
    await expect(pop).to_have_count(1)
    await shot(page, "3-resumed-answered")

    urls = await page.evaluate("() => __e2e.urls")
    resume = urls[-1]
    assert len(urls) > sockets_before
    assert "stream=" in resume and "last_seq=" in resume and "token" not in resume
    hellos = [f for f in received if f.get("type") == "hello"]
    assert hellos[0]["resumed"] is False and hellos[-1]["resumed"] is True, hellos
    assert hellos[-1]["seq"] == int(resume.rsplit("last_seq=", 1)[1])

    await office.finish(frames[answered + 1 :])
    await expect(pop).to_have_count(0)


# -- 4. Russian ----------------------------------------------------------------------


async def test_the_russian_ui_and_names_in_any_script(new_page: NewPage, office: Office) -> None:
    page = await new_page(locale="ru-RU")
    await expect(page.locator("#login-title")).to_have_text("Вход")  # from navigator.language
    english = await new_page()
    await expect(english.locator("#login-title")).to_have_text("Sign in")
    keys = await english.evaluate(
        """async () => {
            const {DICTIONARIES} = await import("/static/i18n.js");
            return [Object.keys(DICTIONARIES.en).sort(), Object.keys(DICTIONARIES.ru).sort()];
        }"""
    )
    assert keys[0] == keys[1], set(keys[0]) ^ set(keys[1])

    await sign_in(english, "anna")
    await english.get_by_role("button", name="Русский").click()
    await expect(english.locator("html")).to_have_attribute("lang", "ru")
    await expect(english.locator("#pops-title")).to_have_text("Звонки")
    await expect(english.get_by_role("button", name="Выйти")).to_be_visible()
    await expect(english.locator("#lines-title")).to_have_text("Коллеги")
    await expect(english.locator("#sms-disabled-note")).to_have_text("SMS не настроены.")

    frames = fresh("sip_inbound_answered", seq=104)
    ringing = index_of(frames, "Newstate", Channel="SIP/101", ChannelStateDesc="Up")
    await office.play(frames[:ringing])
    await eventually(lambda: office.live_call("+78125550101"))
    call_id = office.live_call("+78125550101").id
    pop = card(english, call_id)
    await expect(pop.locator(".badge")).to_have_text("Звонит у: 101")
    # The directory knows the client: the network's caller ID name is not shown as if it
    # were the contact (here it is someone else's: "Мария Сидорова").
    await expect(pop.locator(".client-name")).to_have_text("საქართველოს ფოსტა")
    await expect(pop.locator(".caller-name")).to_have_count(0)
    await expect(pop.locator(".contact")).to_have_text("សុខ ចាន់ណា")
    await expect(pop.locator(".manager-name")).to_have_text(MANAGER_NAME)
    await expect(pop.locator("dt").first).to_have_text("Клиент")
    await expect(english.locator('#lines li[data-extension="101"] .line-name')).to_contain_text(
        "Анна Петрова"
    )
    await shot(english, "4-russian-pop")
    await office.finish(frames[ringing:])
    await expect(pop).to_have_count(0)
    await expect(english.locator("#pops-empty")).to_have_text("Сейчас звонков нет.")


# -- 5. the receptionist passes the call to the client's manager --------------------------


async def test_the_receptionist_transfers_to_the_manager(new_page: NewPage, office: Office) -> None:
    page = await new_page()
    await sign_in(page, "rita")
    frames = fresh("sip_inbound_answered", seq=105)
    answered = index_of(frames, "BridgeEnter", Channel="SIP/101")
    await office.play(frames[: answered + 1])
    await eventually(
        lambda: (call := office.live_call("+78125550101")) and call.answered_by == "101"
    )
    call_id = office.live_call("+78125550101").id
    pop = card(page, call_id)
    await expect(pop.locator(".badge")).to_have_text("Answered by 101")
    button = pop.get_by_role("button", name=f"Transfer to {MANAGER_NAME} (102)")
    await expect(button).to_be_enabled()
    await shot(page, "5-before-transfer")
    before = len(office.actions("Redirect"))
    await button.focus()
    await page.keyboard.press("Enter")
    await eventually(lambda: len(office.actions("Redirect")) > before)
    [redirect] = office.actions("Redirect")[before:]
    assert redirect["Exten"] == "102"
    assert redirect["Context"] == "from-internal"
    assert redirect["Channel"].startswith("Local/")  # the caller's side, not 101's phone
    await expect(pop.locator(".transfer-result")).to_have_text("Sent to 102.")
    await shot(page, "5-transferred")
    await office.finish(frames[answered + 1 :])
    await expect(pop).to_have_count(0)


# -- 6. SMS ------------------------------------------------------------------------------


def messages(page: Page):
    return page.locator("#messages li.sms-row")


def sms_row(page: Page, sms_id: str):
    return page.locator(f'#messages li.sms-row[data-sms-id="{sms_id}"]')


def keep_sms_frames(page: Page, into: list[dict]) -> None:
    """Collect the ``sms.*`` frames the page's live feed receives."""

    def received(payload: str | bytes) -> None:
        if isinstance(payload, str) and (frame := json.loads(payload))["type"].startswith("sms."):
            into.append(frame)

    page.on("websocket", lambda ws: ws.on("framereceived", received))


async def test_without_a_modem_the_sms_form_is_disabled(new_page: NewPage) -> None:
    page = await new_page()
    await sign_in(page, "anna")
    await expect(page.locator("#sms-panel")).to_be_visible()
    await expect(page.locator("#sms-fieldset")).to_have_attribute("disabled", "")
    for control in ("#sms-to", "#sms-text", "#sms-submit"):
        await expect(page.locator(control)).to_be_disabled()
    await expect(page.locator("#sms-disabled-note")).to_have_text("SMS is not configured.")
    await expect(page.locator("#messages-panel")).to_be_hidden()  # no modem, no messages
    await expect(page.locator("button.sms-button")).to_have_count(0)


async def test_the_counter_counts_sms_parts_like_the_service(new_page: NewPage) -> None:
    texts = [
        "",
        "Hello",
        "a" * 160,
        "a" * 161,
        "a" * 306,
        "a" * 307,
        "{[€]}" * 32,  # extension characters take two septets: 160
        "{[€]}" * 32 + "a",
        "a" * 152 + "€" + "a" * 10,  # an escape pair is never split between parts
        "ы" * 70,
        "ы" * 71,
        "ы" * 134,
        "ы" * 135,
        "Привет, Мир! " * 10,
        "გამარჯობა " * 7,
        "សួស្តី " * 10,
        "😀" * 35,  # outside the BMP: two UCS-2 units each
        "😀" * 36,
        "a" * 66 + "😀",  # a surrogate pair stays in one part
        "a" * 133 + "😀" + "é" * 3,
        "Line one\nline two\r\n@£$¥",
    ]
    page = await new_page()
    counted = await page.evaluate(
        """async (texts) => {
            const {smsParts} = await import("/static/sms.js");
            return texts.map((text) => smsParts(text));
        }""",
        texts,
    )
    for text, count in zip(texts, counted, strict=True):
        expected = sms_parts_needed(text) if text else ("gsm7", 0)
        assert (count["encoding"], count["parts"]) == expected, (text, count)
        assert count["chars"] == len(text)


async def test_an_operator_texts_a_client_in_russian_and_sees_it_delivered(
    new_page: NewPage, sms_office: Office, modem: ModemEmulator
) -> None:
    """Anna (101), the client's manager, writes from the page; the modem sends both parts
    and the page follows the message to delivered."""
    page = await new_page(at=sms_office)
    frames: list[dict] = []
    keep_sms_frames(page, frames)
    await sign_in(page, "anna")
    await expect(page.locator("#sms-submit")).to_be_enabled()
    await expect(page.locator("#sms-disabled-note")).to_be_hidden()
    await expect(page.locator("#messages-panel")).to_be_visible()

    text = "Здравствуйте, Ирина! Ваш заказ № 42 готов, забрать можно завтра с 10:00 до 18:00."
    assert sms_parts_needed(text) == ("ucs2", 2)
    counter = page.locator("#sms-counter")
    await page.get_by_label("To", exact=True).fill("8 916 123-45-67")
    await page.get_by_label("Message", exact=True).fill("Hello")
    await expect(counter).to_have_text("Characters: 5 · SMS: 1 (GSM 7-bit) · 155 left in this SMS")
    await page.get_by_label("Message", exact=True).fill(text)
    left = 2 * 67 - len(text)
    await expect(counter).to_have_text(
        f"Characters: {len(text)} · SMS: 2 (Unicode) · {left} left in this SMS"
    )
    await shot(page, "6-sms-typed")

    sent_before = len(modem.sent)
    async with page.expect_response(
        lambda r: r.url.endswith("/api/sms") and r.request.method == "POST"
    ) as answer:
        await page.get_by_role("button", name="Send", exact=True).click()
    queued = await (await answer.value).json()
    assert (await answer.value).status == 202, queued
    assert queued["to"] == SMS_CLIENT_NUMBER
    assert (queued["parts"], queued["encoding"]) == (2, "ucs2")
    await expect(page.locator("#sms-result")).to_have_text("The SMS is on its way: 2 SMS, Unicode.")
    await expect(page.locator("#sms-text")).to_have_value("")

    row = sms_row(page, queued["id"])
    await expect(messages(page).first).to_have_attribute("data-sms-id", queued["id"])
    await expect(row).to_have_attribute("data-direction", "out")
    await expect(row.locator(".sms-dir")).to_have_text("Outgoing")
    await expect(row.locator(".sms-text")).to_have_text(text)
    await expect(row.locator("button.phone")).to_have_text("+7 916 123 45 67")
    await expect(row.locator(".sms-client")).to_have_text(SMS_CLIENT_NAME)
    await expect(row.locator(".sms-parts")).to_have_text("2 SMS")
    await expect(row.locator(".sms-status")).to_have_text("delivered")
    await expect(row).to_have_attribute("data-status", "delivered")

    sent = [decode(pdu) for pdu in modem.sent[sent_before:]]
    assert [part.recipient for part in sent] == [SMS_CLIENT_NUMBER] * 2
    assert "".join(part.text for part in sent) == text
    statuses = [f["data"]["status"] for f in frames if f["data"].get("sms_id") == queued["id"]]
    assert [s for i, s in enumerate(statuses) if i == 0 or s != statuses[i - 1]] == [
        "sending",
        "sent",
        "delivered",
    ]
    await page.locator("#messages-panel").screenshot(path=str(ARTIFACTS / "6-messages-sent.png"))
    await shot(page, "6-sms-delivered")

    await page.get_by_role("button", name="Русский").click()
    await expect(page.locator("#messages-title")).to_have_text("Сообщения")
    await expect(row.locator(".sms-status")).to_have_text("доставлено")
    await expect(row.locator(".sms-dir")).to_have_text("Исходящее")
    await expect(page.locator("#sms-result")).to_have_text("SMS отправляется: 2 SMS, Юникод.")
    await expect(counter).to_have_text("Символов: 0 · SMS: 0 (GSM 7 бит) · в этой SMS осталось 160")
    await shot(page, "6-sms-delivered-ru")


async def test_an_incoming_sms_reaches_the_managers_messages_at_once(
    new_page: NewPage, sms_office: Office, modem: ModemEmulator
) -> None:
    """Two parts from the client's phone: one message, with the client's name, on the
    manager's page (in the background: a notification) and the receptionist's, without
    reloading anything."""
    manager = await new_page(at=sms_office, timezone_id="Asia/Tbilisi", hidden=True)
    lists: list[str] = []
    manager.on(
        "request",
        lambda r: lists.append(r.url) if "/api/sms?" in r.url else None,
    )
    async with manager.expect_response(lambda r: "/api/sms?" in r.url):
        await sign_in(manager, "anna")
    reception = await new_page(at=sms_office)
    async with reception.expect_response(lambda r: "/api/sms?" in r.url):
        await sign_in(reception, "rita")
    loaded = len(lists)

    text = "Добрый день! გამარჯობა! សួស្តី! Когда привезёте заказ? <b>срочно</b> & спасибо"
    parts = encode_deliver(SMS_CLIENT_NUMBER, text, reference=77, timestamp=datetime.now(UTC))
    assert len(parts) == 2
    for part in parts:
        modem.deliver_sms(part)

    for page in (manager, reception):
        row = messages(page).filter(has_text="გამარჯობა")
        await expect(row).to_have_count(1)
        await expect(messages(page).first).to_contain_text("გამარჯობა")  # the newest
        await expect(row).to_have_attribute("data-direction", "in")
        await expect(row.locator(".sms-dir")).to_have_text("Incoming")
        await expect(row.locator(".sms-text")).to_have_text(text)  # text, not markup
        await expect(row.locator(".sms-text b")).to_have_count(0)
        await expect(row.locator(".sms-client")).to_have_text(SMS_CLIENT_NAME)
        await expect(row.locator(".sms-status")).to_have_count(0)
    row = messages(manager).filter(has_text="გამარჯობა")
    await expect(row.locator("button.phone")).to_have_text("+7 916 123 45 67")
    await expect(row.locator("button.sms-button")).to_have_text("SMS")
    # The receptionist reads messages but does not send them.
    await expect(reception.locator("#sms-panel")).to_be_hidden()
    await expect(reception.locator("#messages button.sms-button")).to_have_count(0)
    assert len(lists) == loaded  # it came over the live feed

    # The time, in the office's time zone (Moscow, UTC+3 all year), not the browser's
    # (Tbilisi): the user has chosen none of their own. (The English page of a Russian
    # office writes times the British way: 24 hours.)
    when = await row.locator("time").get_attribute("datetime")
    office_time, browser_time = await manager.evaluate(
        """(iso) => ["Europe/Moscow", "Asia/Tbilisi"].map((timeZone) => new Intl.DateTimeFormat(
            "en-GB", {hour: "2-digit", minute: "2-digit", timeZone}).format(new Date(iso)))""",
        when,
    )
    assert office_time != browser_time
    await expect(row.locator("time")).to_contain_text(office_time)

    await manager.wait_for_function("() => window.__notes.length > 0")
    [note] = await manager.evaluate("() => window.__notes")
    assert note["title"] == "New SMS"
    assert "+7 916 123 45 67" in note["body"] and SMS_CLIENT_NAME in note["body"]
    assert "გამარჯობა" in note["body"]
    await expect(manager.locator("#announcer")).to_contain_text("New SMS: +7 916 123 45 67")
    await manager.locator("#messages-panel").screenshot(
        path=str(ARTIFACTS / "7-messages-received.png")
    )
    await shot(manager, "7-sms-received-manager")
    await shot(reception, "7-sms-received-reception")


async def test_the_sms_button_on_a_pop_and_in_the_call_list_fills_the_form(
    new_page: NewPage, sms_office: Office
) -> None:
    page = await new_page(at=sms_office)
    await sign_in(page, "anna")
    frames = fresh("sip_inbound_answered", seq=106)  # +78125550101 rings 101
    ringing = index_of(frames, "Newstate", Channel="SIP/101", ChannelStateDesc="Up")
    await sms_office.play(frames[:ringing])
    await eventually(lambda: sms_office.live_call("+78125550101"))
    call_id = sms_office.live_call("+78125550101").id
    pop = card(page, call_id)
    button = pop.get_by_role("button", name="Send an SMS to +7 812 555 01 01")
    await expect(button).to_have_text("SMS")
    await button.click()
    await expect(page.locator("#sms-to")).to_have_value("+7 812 555 01 01")
    await expect(page.locator("#sms-text")).to_be_focused()
    await shot(page, "8-sms-from-pop")

    await sms_office.finish(frames[ringing:])
    await sms_office.service.call_store.flush()
    await page.locator("#sms-to").fill("")
    await page.locator("#calls-refresh").click()
    listed = page.locator('#recent-calls button.sms-button[data-sms-number="+78125550101"]')
    await expect(listed.first).to_be_visible()
    await listed.first.click()
    await expect(page.locator("#sms-to")).to_have_value("+7 812 555 01 01")
    await expect(page.locator("#sms-text")).to_be_focused()


# -- 9. the supervisor's pages: call log, missed calls, reports ---------------------------


async def shown_call_ids(page: Page) -> list[str]:
    await expect(page.locator("#log-table")).to_have_attribute("data-state", "ready")
    return await log_rows(page).evaluate_all("(rows) => rows.map((r) => r.dataset.callId)")


async def downloaded(page: Page, button) -> tuple[str, str]:
    """Click an export button; the file's name and text."""
    async with page.expect_download() as info:
        await button.click()
    download = await info.value
    data = await asyncio.to_thread(Path(await download.path()).read_bytes)
    return download.suggested_filename, data.decode("utf-8")


async def test_the_supervisor_reviews_the_call_log(new_page: NewPage, office: Office) -> None:
    answered = await replay(office, "sip_inbound_answered", 201)  # +78125550101, 101
    missed = await replay(office, "sip_inbound_missed", 202)  # +78125550102, missed by 101
    group = await replay(office, "sip_ringgroup_answered", 203)  # 101 and 102 rang; 102
    moved = await replay(office, "sip_blind_transfer_refer", 204)  # 101 -> 102
    # The lab's MixMonitor file of the answered call, where the service expects it.
    async with office.service.sessions() as session:
        [recording] = await session.scalars(
            select(Recording).where(Recording.call_id == answered["id"])
        )
    target = office.service.recordings.store.root / recording.path
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(LAB_WAV, target)

    page = await new_page(timezone_id="Europe/Moscow")
    await sign_in(page, "vera")
    nav = page.get_by_role("navigation", name="Pages")
    for name in ("Desk", "Call log", "Reports"):
        await expect(nav.get_by_role("link", name=name, exact=True)).to_be_visible()
    await expect(nav.get_by_role("link", name=re.compile("^Callbacks"))).to_be_visible()
    await nav.get_by_role("link", name="Call log", exact=True).click()
    assert page.url.endswith("#log")
    await expect(page.locator("#log-title")).to_be_focused()
    await expect(page.locator("#desk-view")).to_be_hidden()
    token = await token_of(page)
    newest = await api_get(office, token, "/api/calls", limit=50)
    assert await shown_call_ids(page) == [c["id"] for c in newest["calls"]]

    row = log_row(page, answered["id"])
    await expect(row.locator(".log-client")).to_have_text("საქართველოს ფოსტა")
    await expect(row.locator(".log-caller-name")).to_have_count(0)  # the directory knows
    await expect(row.locator(".log-manager")).to_have_text(f"manager: {MANAGER_NAME} (102)")
    await expect(row.locator(".log-number button.phone")).to_have_text("+7 812 555 01 01")
    await expect(row.locator(".log-answered")).to_have_text("101 · Анна Петрова")
    await expect(row.locator(".log-outcome")).to_have_text("answered")
    await expect(row).not_to_have_class(re.compile("log-missed"))
    await expect(row.locator("button.play")).to_be_visible()
    row = log_row(page, missed["id"])
    await expect(row).to_have_class(re.compile(r"\blog-missed\b"))
    await expect(row.locator(".log-outcome")).to_have_text("not answered · missed")
    await expect(row.locator(".log-caller-name")).to_have_text(
        "caller ID: ООО Ромашка"
    )  # labelled: not a client
    await expect(row.locator("button.play")).to_be_visible()  # MixMonitor ran; no file here
    await expect(log_row(page, group["id"]).locator(".log-rang")).to_have_text("101, 102")
    await expect(log_row(page, moved["id"]).locator(".log-transfers")).to_have_text("101→102")
    await expect(log_row(page, group["id"]).locator(".log-client")).to_have_text("ООО «Ромашка»")
    await shot(page, "9-call-log")

    # Missed only.
    await page.get_by_label("Missed only").check()
    await page.locator("#log-apply").click()
    ids = await shown_call_ids(page)
    assert missed["id"] in ids and answered["id"] not in ids
    assert ids == [
        c["id"] for c in (await api_get(office, token, "/api/calls", missed="true"))["calls"]
    ]
    await expect(page.locator('#log-rows tr.log-row[data-missed="false"]')).to_have_count(0)

    # And by extension: 102 was not rung by the missed call; with "any" it was rung by the
    # ring group and the transfer.
    await page.get_by_label("Extension").select_option("102")
    await page.get_by_label("Extension").press("Enter")
    await expect(page.locator("#log-rows tr.log-row")).to_have_count(
        len((await api_get(office, token, "/api/calls", missed="true", extension="102"))["calls"])
    )
    assert missed["id"] not in await shown_call_ids(page)
    await page.get_by_label("Missed only").uncheck()
    await page.locator("#log-apply").click()
    await expect(log_row(page, group["id"])).to_be_visible()
    ids = await shown_call_ids(page)
    assert moved["id"] in ids and answered["id"] not in ids and missed["id"] not in ids
    expected = (await api_get(office, token, "/api/calls", extension="102"))["calls"]
    assert ids == [c["id"] for c in expected]
    await shot(page, "9-call-log-extension-102")

    # Export what is shown: the filtered calls, in the browser's time zone, BOM first.
    await page.get_by_label("Extension").select_option("101")
    await page.get_by_label("Missed only").check()
    await page.locator("#log-apply").click()
    await expect(log_row(page, missed["id"])).to_be_visible()
    ids = await shown_call_ids(page)
    name, text = await downloaded(page, page.get_by_role("button", name="Export CSV"))
    assert name.startswith("calls-") and name.endswith(".csv")
    assert text.startswith("\ufeffstarted_at,direction,number,caller_name,client,")
    rows = list(csv.DictReader(io.StringIO(text[1:])))
    assert [r["call_id"] for r in rows] == ids  # everything shown, nothing else
    assert all(r["missed"] == "true" for r in rows)
    [exported] = [r for r in rows if r["call_id"] == missed["id"]]
    assert exported["number"] == "+78125550102"
    assert exported["caller_name"] == "ООО Ромашка"  # Cyrillic intact
    assert exported["rang"] == "101" and exported["outcome"] == "no_answer"
    started = datetime.fromisoformat(exported["started_at"])  # in the browser's zone
    assert exported["started_at"].endswith("+03:00")
    assert started == datetime.fromisoformat(missed["started_at"]).replace(microsecond=0)
    await expect(page.locator("#log-export-status")).to_have_text(f"Downloaded {name}.")

    # A client by name, a number as people type it.
    await page.get_by_role("button", name="Reset").click()
    await page.get_by_label("Number or client").fill("ромашка")
    await page.get_by_label("Number or client").press("Enter")
    await expect(log_row(page, missed["id"])).to_have_count(0)
    ids = await shown_call_ids(page)
    assert group["id"] in ids
    [romashka] = (await api_get(office, token, "/api/clients", q="ромашка"))["clients"]
    by_client = await api_get(office, token, "/api/calls", client_id=str(romashka["id"]))
    assert ids == [c["id"] for c in by_client["calls"]]
    await page.get_by_label("Number or client").fill("8 (812) 555-01-02")
    await page.get_by_label("Number or client").press("Enter")
    await expect(log_row(page, missed["id"])).to_be_visible()
    by_number = await api_get(office, token, "/api/calls", number="+78125550102")
    assert await shown_call_ids(page) == [c["id"] for c in by_number["calls"]]
    await page.get_by_label("Number or client").fill("Нет такого клиента")
    await page.get_by_label("Number or client").press("Enter")
    await expect(page.locator("#log-error")).to_contain_text("No client matches")
    await expect(log_rows(page)).to_have_count(0)

    # Pages of two (the service's own paging), "Load more" until there is no more.
    async def pages_of_two(route) -> None:
        await route.continue_(url=route.request.url.replace("limit=50", "limit=2"))

    calls_api = re.compile(r"/api/calls\?")
    await page.route(calls_api, pages_of_two)
    await page.get_by_role("button", name="Reset").click()
    await expect(log_rows(page)).to_have_count(2)
    everything = (await api_get(office, token, "/api/calls", limit=200))["calls"]
    more = page.get_by_role("button", name="Load more")
    for shown in range(4, len(everything) + 2, 2):
        await more.click()
        await expect(log_rows(page)).to_have_count(min(shown, len(everything)))
    await expect(more).to_be_hidden()
    assert await shown_call_ids(page) == [c["id"] for c in everything]
    await page.unroute(calls_api, pages_of_two)

    # Play the recording: the page asks for a media grant with its token, then the <audio>
    # streams the file itself with Range requests, the grant's cookie standing in for the
    # token (which never goes in a URL).
    audio_url = f"{office.url}/api/recordings/{recording.id}"
    streamed = []
    page.on("request", lambda r: streamed.append(r) if r.url == audio_url else None)
    await page.get_by_role("button", name="Reset").click()
    await expect(log_row(page, answered["id"])).to_be_visible()
    async with page.expect_request(lambda r: r.url.endswith("/grant")) as granted:
        await log_row(page, answered["id"]).locator("button.play").click()
    request = await granted.value
    assert request.method == "POST" and request.url == f"{audio_url}/grant"
    assert (await request.all_headers())["authorization"] == f"Bearer {token}"
    assert (await request.response()).status == 200
    audio = page.locator("#log-player audio")
    await expect(audio).to_have_attribute("src", f"/api/recordings/{recording.id}")
    await expect(audio).to_have_attribute("preload", "metadata")
    await page.wait_for_function(
        "() => document.querySelector('#log-player audio').readyState >= 1"
    )
    duration = await audio.evaluate("(a) => a.duration")
    assert 1 < duration < 60, duration
    await expect(page.locator("#log-player-status")).to_have_text("The recording is ready to play.")
    # It plays: time moves on (the page starts it; the click was the user's gesture).
    await audio.evaluate("(a) => a.play()")
    await page.wait_for_function(
        "() => document.querySelector('#log-player audio').currentTime > 0.2"
    )
    # The browser itself asked for ranges, with no token: the cookie did it.
    assert streamed, "the audio element sent no request"
    for sent in streamed:
        headers = await sent.all_headers()
        assert headers.get("range", "").startswith("bytes="), headers
        assert "authorization" not in headers
        assert (await sent.response()).status == 206
    [cookie] = [c for c in await page.context.cookies() if c["name"] == "media_grant"]
    assert cookie["path"] == f"/api/recordings/{recording.id}"
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert token not in cookie["value"]
    assert await page.evaluate("document.cookie") == ""  # HttpOnly: not the page's to read
    listens = await api_get(office, token, f"/api/recordings/{recording.id}/listens")
    heard = listens["listens"]
    assert heard and all(x["username"] == "vera" for x in heard)  # audited
    assert all((x["range"] or "").startswith("bytes=") for x in heard)  # what it sent
    await shot(page, "9-call-log-playing")
    await page.get_by_role("button", name="Close", exact=True).click()
    await expect(page.locator("#log-player")).to_be_hidden()
    await expect(log_row(page, answered["id"]).locator("button.play")).to_be_focused()
    # The missed call's file never reached the service: the player says so.
    await log_row(page, missed["id"]).locator("button.play").click()
    await expect(page.locator("#log-player .recording")).to_have_text(
        "Recording 1Not available yet."
    )
    await expect(page.locator("#log-player audio")).to_have_count(0)

    # The operators: Giorgi was not on the call, so its recording is not his to hear; Anna's
    # call log has her own calls only.
    giorgi = await new_page()
    await sign_in(giorgi, "giorgi")
    statuses = await giorgi.evaluate(
        """async (id) => {
            const token = JSON.parse(sessionStorage.getItem("cti.session")).token;
            const headers = {Authorization: `Bearer ${token}`};
            const grant = await fetch(`/api/recordings/${id}/grant`, {method: "POST", headers});
            return [(await fetch(`/api/recordings/${id}`, {headers})).status, grant.status];
        }""",
        recording.id,
    )
    assert statuses == [403, 403]
    await giorgi.get_by_role("link", name="Call log").click()
    await expect(giorgi.locator("#log-scope")).to_have_text(
        "Calls that involved your extension 102."
    )
    await expect(log_row(giorgi, group["id"])).to_be_visible()
    await expect(log_row(giorgi, answered["id"])).to_have_count(0)
    await expect(giorgi.get_by_role("link", name="Reports")).to_be_hidden()
    anna = await new_page()
    await sign_in(anna, "anna")
    await anna.goto(f"{office.url}/#log")
    await expect(log_row(anna, answered["id"])).to_be_visible()
    async with anna.expect_response(lambda r: r.url.endswith("/grant")) as granted:
        await log_row(anna, answered["id"]).locator("button.play").click()
    assert (await granted.value).status == 200
    await expect(anna.locator("#log-player audio")).to_have_attribute(
        "src", f"/api/recordings/{recording.id}"
    )
    await anna.wait_for_function(
        "() => document.querySelector('#log-player audio').readyState >= 1"
    )
    await shot(giorgi, "9-call-log-operator")

    # A one-hour recording (the missed call's file arrives at last): seeking near its end
    # fetches from there, not the hour before it.
    async with office.service.sessions() as session:
        [long] = await session.scalars(select(Recording).where(Recording.call_id == missed["id"]))
    target = office.service.recordings.store.root / long.path
    size = await asyncio.to_thread(write_silence, target, seconds=3600)
    long_url = f"{office.url}/api/recordings/{long.id}"
    sent: list[object] = []
    page.on("request", lambda r: sent.append(r) if r.url == long_url else None)
    await page.get_by_role("button", name="Close", exact=True).click()
    await log_row(page, missed["id"]).locator("button.play").click()
    playing = "document.querySelector('#log-player audio')"
    await page.wait_for_function(f"() => {playing}?.readyState >= 1")
    assert await page.evaluate(f"{playing}.duration") == 3600
    await page.evaluate(f"{playing}.currentTime = 3000")
    await page.wait_for_function(f"() => !{playing}.seeking && {playing}.readyState >= 2")
    # What the browser sent, as the audit of listens has it: ranges only, one from the end.
    listens = (await api_get(office, token, f"/api/recordings/{long.id}/listens"))["listens"]
    ranges = [x["range"] for x in listens]
    assert sent and all(r and r.startswith("bytes=") for r in ranges)
    starts = [int(r.removeprefix("bytes=").split("-")[0]) for r in ranges]
    assert min(starts) == 0 and max(starts) > size * 0.8, (ranges, size)

    # A grant that lapsed (here: the cookie is gone) is asked for again when the audio
    # fails, and the audio goes on from where it was.
    await page.context.clear_cookies()
    async with page.expect_response(lambda r: r.url == f"{long_url}/grant") as regranted:
        await page.evaluate(f"{playing}.currentTime = 1000")
    assert (await regranted.value).status == 200
    await page.wait_for_function(
        f"() => {playing}.readyState >= 2 && Math.abs({playing}.currentTime - 1000) < 1"
    )
    await expect(page.locator("#log-player-status")).to_have_text("The recording is ready to play.")


def write_silence(path: Path, seconds: int) -> int:
    """A WAV of ``seconds`` of silence (8 kHz, 16-bit mono), sparse on disk; its size."""
    data = seconds * 8000 * 2
    header = b"RIFF" + struct.pack("<I", 36 + data) + b"WAVEfmt "
    header += struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16) + b"data"
    header += struct.pack("<I", data)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as file:
        file.write(header)
        file.truncate(len(header) + data)
    return len(header) + data


async def test_missed_calls_are_handled_and_the_count_drops_live(
    new_page: NewPage, office: Office
) -> None:
    anna = await new_page()
    await sign_in(anna, "anna")
    anna_token = await token_of(anna)
    lists: list[str] = []
    anna.on("request", lambda r: lists.append(r.url) if "/api/tasks" in r.url else None)
    boss = await new_page()
    await sign_in(boss, "vera")
    boss_token = await token_of(boss)
    await boss.get_by_role("link", name=re.compile("^Callbacks")).click()
    await expect(boss.locator("#worklist-table")).to_have_attribute("data-state", "ready")

    call = await replay(office, "busy_extension", 210)  # the client's call; 101 is busy
    assert call["missed"] and call["external_number"] == BUSY_CLIENT_NUMBER
    mine = (await api_get(office, anna_token, "/api/tasks", status="open"))["tasks"]
    [task] = [t for t in mine if t["number"] == BUSY_CLIENT_NUMBER]
    everyone = (await api_get(office, boss_token, "/api/tasks", status="open"))["tasks"]
    # Both pages count it at once, from the live feed.
    await expect(anna.locator("#worklist-count")).to_have_text(str(len(mine)))
    await expect(boss.locator("#worklist-count")).to_have_text(str(len(everyone)))

    row = task_row(boss, BUSY_CLIENT_NUMBER)
    await expect(row.locator(".task-client-name")).to_have_text(BUSY_CLIENT_NAME)
    await expect(row.locator(".task-manager")).to_have_text("Анна Петрова (101)")
    await expect(row.locator(".task-missed")).to_have_text(str(task["missed_calls"]))
    await expect(row.locator("time")).to_have_attribute("datetime", task["created_at"])
    await expect(row.locator("button.phone")).to_have_text("+7 495 000 00 02")
    await shot(boss, "9-missed-calls")

    # Call back: from the supervisor's own phone.
    before = len(office.actions("Originate"))
    await row.get_by_role("button", name="Call back +7 495 000 00 02").click()
    await eventually(lambda: len(office.actions("Originate")) > before)
    assert office.actions("Originate")[-1]["Channel"] == "PJSIP/103"

    # Mark it handled, with the keyboard, with a comment.
    handle = row.get_by_role("button", name="Mark the missed call from +7 495 000 00 02 handled")
    await handle.focus()
    await boss.keyboard.press("Enter")
    comment = boss.get_by_label("Comment")
    await expect(comment).to_be_focused()
    await boss.keyboard.type("Перезвонили с мобильного, клиент доволен")
    await shot(boss, "9-missed-calls-handling")
    await boss.keyboard.press("Tab")
    await boss.keyboard.press("Enter")
    await expect(row).to_have_count(0)
    await expect(boss.locator("#worklist-status")).to_have_text("Marked handled: +7 495 000 00 02.")
    async with office.service.sessions() as session:
        stored = await session.get(CallbackTask, task["id"])
        vera = await auth.find_user(session, "vera")
        assert stored.closed_at is not None and stored.closed_reason == "by_hand"
        assert stored.comment == "Перезвонили с мобильного, клиент доволен"
        assert stored.closed_by_user_id == vera.id

    # The counts drop: Anna's page learns it from the feed, without asking the API again.
    await expect(boss.locator("#worklist-count")).to_have_text(
        str(len(everyone) - 1) if len(everyone) > 1 else ""
    )
    asked = len(lists)
    await expect(anna.locator("#worklist-count")).to_have_text(
        str(len(mine) - 1) if len(mine) > 1 else ""
    )
    assert len(lists) == asked

    # Handled ones: who, when, how, and the comment.
    await boss.get_by_role("button", name="Handled", exact=True).click()
    row = task_row(boss, BUSY_CLIENT_NUMBER)
    await expect(row.locator(".task-by")).to_have_text("Вера Орлова")
    await expect(row.locator(".task-how")).to_have_text("by hand")
    await expect(row.locator(".task-comment")).to_have_text(
        "Перезвонили с мобильного, клиент доволен"
    )
    await shot(boss, "9-missed-calls-handled")

    # Anna sees hers, in Russian.
    await anna.get_by_role("button", name="Русский").click()
    await anna.get_by_role("link", name=re.compile("^Перезвонить")).click()
    await expect(anna.locator("#worklist-title")).to_have_text("Перезвонить")
    await anna.get_by_role("button", name="Обработанные").click()
    row = task_row(anna, BUSY_CLIENT_NUMBER)
    await expect(row.locator(".task-how")).to_have_text("вручную")
    await shot(anna, "9-missed-calls-operator-ru")


async def test_the_reports_page(new_page: NewPage, office: Office) -> None:
    await replay(office, "sip_inbound_missed", 220)
    await replay(office, "sip_queue_answered", 221)
    page = await new_page(timezone_id="Europe/Moscow")
    await sign_in(page, "vera")
    async with page.expect_response(lambda r: "/api/reports/calls?" in r.url) as answer:
        await page.get_by_role("link", name="Reports").click()
    response = await answer.value
    assert response.status == 200
    params = parse_qs(urlparse(response.url).query)
    assert params["tz"] == ["Europe/Moscow"] and params["group"] == ["day"]
    rows = (await response.json())["rows"]
    assert rows and sum(r["calls"] for r in rows) >= 2
    table = page.locator("#report-rows tr.report-row")
    await expect(table).to_have_count(len(rows))
    for index, row in enumerate(rows):
        cells = table.nth(index)
        await expect(cells.locator('[data-col="calls"]')).to_have_text(str(row["calls"]))
        await expect(cells.locator('[data-col="missed"]')).to_have_text(str(row["missed"]))
    bars = page.locator("#report-svg rect.bar")
    await expect(bars).to_have_count(3 * len(rows))
    missed_bar = page.locator('#report-svg rect.bar[data-series="missed"]').last
    await expect(missed_bar).to_have_attribute("data-value", str(rows[-1]["missed"]))
    await expect(page.locator("#report-svg title").first).to_have_text(
        "Calls, answered and missed calls per group"
    )
    await shot(page, "9-reports-day")

    # Per operator, and a shorter callback window; the same numbers as the API.
    await page.get_by_label("Grouping").select_option("operator")
    await page.get_by_label("Call back within (minutes)").fill("15")
    async with page.expect_response(lambda r: "/api/reports/calls?" in r.url) as answer:
        await page.get_by_label("Call back within (minutes)").press("Enter")
    rows = (await (await answer.value).json())["rows"]
    keys = [r["key"] for r in rows]
    assert "101" in keys
    await expect(table).to_have_count(len(rows))
    anna = table.filter(has_text="101 · Анна Петрова")
    await expect(anna.locator('[data-col="calls"]')).to_have_text(
        str(next(r["calls"] for r in rows if r["key"] == "101"))
    )
    await expect(page.locator("#report-head th").last).to_have_text("Called back within 15 min")
    name, text = await downloaded(page, page.get_by_role("button", name="Export CSV"))
    assert name.startswith("calls-by-operator-") and name.endswith(".csv")
    exported = list(csv.DictReader(io.StringIO(text)))
    assert [r["key"] for r in exported] == keys
    assert [int(r["calls"]) for r in exported] == [r["calls"] for r in rows]
    await shot(page, "9-reports-operator")

    await page.get_by_role("button", name="Русский").click()
    await expect(page.locator("#reports-title")).to_have_text("Отчёты")
    await expect(page.locator("#report-head th").first).to_have_text("Оператор")
    await expect(page.locator("#report-legend")).to_contain_text("Пропущено")
    await shot(page, "9-reports-ru")


async def test_operators_see_no_reports(new_page: NewPage, office: Office) -> None:
    page = await new_page()
    await sign_in(page, "anna")
    await page.goto(f"{office.url}/#reports")
    await expect(page.locator("#desk-view")).to_be_visible()
    await expect(page.locator("#reports-view")).to_be_hidden()
    await expect(page.get_by_role("link", name="Reports")).to_be_hidden()
    reception = await new_page()
    await sign_in(reception, "rita")
    await expect(reception.get_by_role("link", name=re.compile("^Callbacks"))).to_be_visible()
    await expect(reception.get_by_role("link", name="Reports")).to_be_hidden()


async def test_the_faxes_page_sends_and_says_why_it_cannot(
    new_page: NewPage, office: Office, tmp_path
) -> None:
    """Issue 16's pages: the Faxes page for an operator, its send form and inbox. This
    office's PBX has no fax line, so the send is refused with the reason, on the page."""
    from fax_docs import page as fax_page

    image = tmp_path / "Договор.png"
    fax_page(1).save(image)
    page = await new_page()
    await sign_in(page, "anna")
    await page.get_by_role("link", name="Faxes").click()
    await expect(page.locator("#faxes-view")).to_be_visible()
    await expect(page.locator("#faxes-empty")).to_have_text("No faxes here.")
    await page.locator("#fax-form input[name=number]").fill("+7 495 123-45-67")
    await page.locator("#fax-files").set_input_files(str(image))
    await page.locator("#fax-send").click()
    await expect(page.locator("#fax-send-status")).to_contain_text(
        "no phone system here sends faxes"
    )
    await page.locator("#faxes-show-out").click()
    await expect(page.locator("#faxes-show-out")).to_have_attribute("aria-pressed", "true")
    await page.locator("#faxes-status").select_option("failed")
    await page.locator("#faxes-search").fill("Ромашка")
    await expect(page.locator("#faxes-empty")).to_have_text("No faxes here.")
    await shot(page, "faxes-page")
