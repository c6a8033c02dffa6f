"""The operator desktop end to end: a real headless Chromium (Playwright) against the
service on a real port, fed by the AMI simulator replaying the lab's recorded calls.

One browser and one service serve the whole module; every test gets fresh browser
contexts (so fresh sessionStorage) and replays its calls with identities of its own.
Screenshots of the key steps go to tests/artifacts/.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio
from aiohttp import ClientSession
from e2e_helpers import (
    ARTIFACTS,
    CHROMIUM,
    MANAGER_NAME,
    PASSWORD,
    USERS,
    VIEWPORT,
    WS_SPY,
    Office,
    eventually,
    fresh,
    index_of,
    start_office,
    stop_office,
)

from cti.phone import dialable

playwright_api = pytest.importorskip("playwright.async_api")
Page = playwright_api.Page
expect = playwright_api.expect

# CI (CTI_TEST_REQUIRE_BROWSER=1, set by .ci/run) fails rather than skips without Chromium.
pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(
        not CHROMIUM.exists() and os.environ.get("CTI_TEST_REQUIRE_BROWSER") != "1",
        reason=f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)",
    ),
]

expect.set_options(timeout=10_000)

NewPage = Callable[..., Awaitable[Page]]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def office(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Office]:
    office = await start_office(tmp_path_factory.mktemp("e2e"))
    yield office
    await stop_office(office)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[object]:
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox"]
        )
        yield browser
        await browser.close()


@pytest_asyncio.fixture(loop_scope="module")
async def new_page(browser, office: Office) -> AsyncIterator[NewPage]:
    """``await new_page(locale="en-US")``: a page in a context of its own. The test fails
    if a page throws or the browser refuses something under the page's CSP."""
    contexts = []
    problems: list[str] = []

    async def make(locale: str = "en-US", spy: bool = False) -> Page:
        context = await browser.new_context(viewport=VIEWPORT, locale=locale)
        contexts.append(context)
        page = await context.new_page()
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on(
            "console",
            lambda msg: (
                problems.append(f"console: {msg.text}")
                if msg.type == "error" and "Content Security Policy" in msg.text
                else None
            ),
        )
        if spy:
            await page.add_init_script(WS_SPY)
        await page.goto(office.url)
        return page

    yield make
    for context in contexts:
        await context.close()
    assert not problems, problems


async def sign_in(page: Page, username: str) -> None:
    """Sign in with the keyboard (Enter submits) and wait for the live feed."""
    await page.get_by_label(re.compile("User name|Имя пользователя")).fill(username)
    await page.locator("#login-password").fill(PASSWORD)
    await page.locator("#login-password").press("Enter")
    await expect(page.locator("#feed-status")).to_have_attribute("data-state", "live")


def card(page: Page, call_id: str):
    return page.locator(f'article.card[data-call-id="{call_id}"]')


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


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
    await eventually(lambda: office.adapter.connected.is_set())
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
        await expect(pop.locator(".caller")).to_contain_text("+7 812 555-01-04")
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
    await page.get_by_role("button", name="Refresh").click()
    await page.get_by_role("tab", name=re.compile("Missed")).click()
    number = page.locator('#missed-calls button.phone[data-number="+78125550102"]').first
    await expect(number).to_have_text("+7 812 555-01-02")
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
    await expect(status).to_contain_text("+7 812 555-01-02")
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
    await expect(pop.locator(".caller-name")).to_have_text("Мария Сидорова")
    await expect(pop.locator(".client-name")).to_have_text("საქართველოს ფოსტა")
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
