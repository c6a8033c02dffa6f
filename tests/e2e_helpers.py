"""Helpers for the browser tests (test_web_e2e.py): a real service on a real port with a
simulated Asterisk (and, for the SMS tests, an emulated GSM modem), known users and
clients, and a few page-side conveniences."""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import ClientSession, web
from fs_lab import lab_pbx as fs_lab_pbx
from helpers import eventually
from lab import EXPECTED, FIXTURES, lab_pbx
from sqlalchemy import select

from cti import auth
from cti.clients.builtin import ClientIn, ContactIn, PhoneIn, save_client
from cti.config import (
    Config,
    CrmConfig,
    DatabaseConfig,
    ModemConfig,
    RecordingsConfig,
    ServerConfig,
)
from cti.db.models import CallRecord
from cti.http.app import build_app
from cti.service import Service
from pbx_adapters.asterisk.simulator import LAB_MONITOR, AmiSimulator, load_transcript, refresh_ids
from pbx_adapters.freeswitch.simulator import EslSimulator

CHROMIUM = Path("/usr/bin/chromium")
# A browser test module's pytestmark. CI (CTI_TEST_REQUIRE_BROWSER=1, set by .ci/run) fails
# rather than skips without Chromium.
BROWSER_TESTS = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(
        not CHROMIUM.exists() and os.environ.get("CTI_TEST_REQUIRE_BROWSER") != "1",
        reason=f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)",
    ),
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
VIEWPORT = {"width": 1366, "height": 768}

# Who works in the test office. Extension 102 is the manager of the lab's callers,
# extension 101 of the client who texts (SMS_CLIENT) and of the one whose call the
# busy extension misses (BUSY_CLIENT). Vera supervises.
USERS = {
    "anna": dict(role="operator", extension="101", display_name="Анна Петрова"),
    "giorgi": dict(role="operator", extension="102", display_name="გიორგი ბერიძე"),
    "rita": dict(role="receptionist", extension=None, display_name="Рита Смирнова"),
    "vera": dict(role="supervisor", extension="103", display_name="Вера Орлова"),
}
PASSWORD = "correct horse battery staple"
MANAGER_NAME = USERS["giorgi"]["display_name"]

# The callers of the lab transcripts, as the directory knows them.
CLIENTS = [
    ClientIn(
        name="ООО «Ромашка»",
        manager_extension="102",
        tags=["VIP"],
        phones=[PhoneIn("+7 812 555-01-04", "офис")],  # sip_ringgroup_answered
        contacts=[ContactIn("Сергей Волков", position="директор")],
    ),
    ClientIn(
        name="საქართველოს ფოსტა",  # Georgian
        manager_extension="102",
        phones=[PhoneIn("+7 812 555-01-01")],  # sip_inbound_answered ("Мария Сидорова")
        contacts=[ContactIn("សុខ ចាន់ណា")],  # Khmer
    ),
    ClientIn(
        name="Ирина Кузнецова",
        kind="person",
        manager_extension="101",
        phones=[PhoneIn("+7 916 123-45-67", "мобильный")],
    ),
    ClientIn(
        name="ООО «Василёк»",
        manager_extension="101",
        phones=[PhoneIn("+7 495 000-00-02")],  # busy_extension: missed, 101 was busy
    ),
]
BUSY_CLIENT_NAME = "ООО «Василёк»"
BUSY_CLIENT_NUMBER = "+74950000002"

# Where the lab's MixMonitor writes (the transcripts name files there), and recordings of
# the lab's calls to put at the place the service expects them.
LAB_WAV = Path(__file__).resolve().parent / "fixtures" / "recordings" / "1795362636.6.wav"
SMS_CLIENT_NUMBER = "+79161234567"
SMS_CLIENT_NAME = "Ирина Кузнецова"

# A test page's WebSocket constructor, wrapped: every socket is kept in __e2e.sockets,
# and while __e2e.blocked is set new sockets go to a path that does not exist, so the
# page's reconnects fail until the test lets them through.
WS_SPY = """
(() => {
  const Native = window.WebSocket;
  const e2e = { sockets: [], urls: [], blocked: false };
  window.__e2e = e2e;
  function Spy(url, protocols) {
    const target = e2e.blocked ? new URL("/e2e-blocked", url).href : url;
    const ws = protocols === undefined ? new Native(target) : new Native(target, protocols);
    e2e.sockets.push(ws);
    e2e.urls.push(String(url));
    return ws;
  }
  Spy.prototype = Native.prototype;
  for (const key of ["CONNECTING", "OPEN", "CLOSING", "CLOSED"]) Spy[key] = Native[key];
  window.WebSocket = Spy;
})();
"""

# A page nobody is looking at, whose user allowed notifications: document.hidden is true
# and every Notification the page shows is kept in __notes instead.
HIDDEN_TAB = """
(() => {
  const notes = [];
  window.__notes = notes;
  class Recorded {
    constructor(title, options = {}) {
      notes.push({ title, body: options.body || "", tag: options.tag || "" });
    }
    close() {}
  }
  Recorded.permission = "granted";
  Recorded.requestPermission = async () => "granted";
  window.Notification = Recorded;
  Object.defineProperty(document, "hidden", { get: () => true, configurable: true });
  Object.defineProperty(document, "visibilityState", { get: () => "hidden", configurable: true });
})();
"""


def fresh(name: str, seq: int) -> list[dict[str, str]]:
    """A lab transcript with identities no other replay in this run uses."""
    return refresh_ids(load_transcript(FIXTURES / f"{name}.ami"), seq=seq)


def index_of(frames: list[dict[str, str]], event: str, **fields: str) -> int:
    """The first frame of ``event`` whose fields start with the given values."""
    for index, frame in enumerate(frames):
        if frame.get("Event") == event and all(
            frame.get(key, "").startswith(value) for key, value in fields.items()
        ):
            return index
    raise LookupError(f"no {event} {fields} in the transcript")


@dataclass
class Office:
    """The service under test, its PBX and where the browser finds it."""

    service: Service
    pbx: AmiSimulator
    url: str
    runner: web.AppRunner
    replays: list[int] = field(default_factory=list)
    switch: EslSimulator | None = None  # a FreeSWITCH beside the Asterisk, link "fs"

    @property
    def adapter(self):
        return self.service.pbx["lab"]

    def live_call(self, number: str):
        """The tracker's call in progress from ``number``, or None."""
        for call in self.adapter.tracker.active_calls():
            if call.external_number == number:
                return call
        return None

    async def play(self, frames: list[dict[str, str]]) -> None:
        await self.pbx.play(frames)

    async def finish(self, frames: list[dict[str, str]]) -> None:
        """Play the rest of a call and wait until the tracker has closed it."""
        await self.pbx.play(frames)
        await eventually(lambda: not self.adapter.tracker.calls)

    def actions(self, name: str) -> list[dict[str, str]]:
        return [a for a in self.pbx.actions if a.get("Action", "").lower() == name.lower()]


async def start_office(
    data_dir: Path,
    modem_port: Path | None = None,
    time_zone: str = "Europe/Moscow",
    freeswitch: bool = False,
    crm: CrmConfig | None = None,
) -> Office:
    """The office (in ``time_zone``); with ``modem_port`` (an emulator's), a GSM modem
    "sim1" on it too; with ``freeswitch``, a FreeSWITCH (link "fs") beside its Asterisk;
    with ``crm``, that CRM instead of the built-in directory."""
    pbx = AmiSimulator(username="cti", secret="e2e-secret")
    await pbx.start()
    switch = EslSimulator("e2e-secret", heartbeat_interval=0.5) if freeswitch else None
    if switch is not None:
        await switch.start()
    config = Config(
        server=ServerConfig(data_dir=data_dir, host="127.0.0.1", port=0, time_zone=time_zone),
        database=DatabaseConfig(
            url=f"sqlite+aiosqlite:///{data_dir / 'e2e.db'}", auto_migrate=True
        ),
        pbx=[
            lab_pbx(
                pbx.port,
                "e2e-secret",
                originate_channel="PJSIP/{extension}",
                originate_context="from-internal",
                transfer_context="from-internal",
                ping_interval=1.0,
            ),
            *([fs_lab_pbx(switch.port, "e2e-secret")] if switch else []),
        ],
        recordings=RecordingsConfig(dir=str(data_dir / "recordings"), pbx_dir=LAB_MONITOR),
        crm=crm or CrmConfig(),
        # Service.start registers the modem's link and opens it.
        modem=[]
        if modem_port is None
        else [ModemConfig(name="sim1", port=str(modem_port), ring_extensions=["101"])],
    )
    service = await Service.start(config)
    try:
        for adapter in service.pbx.values():
            await asyncio.wait_for(adapter.link_up.wait(), 10)
        for link in service.modems.values():
            await eventually(lambda link=link: link.modem.ready)
        url, runner = await serve_with_people(service)
    except BaseException:
        await service.close()
        await pbx.stop()
        if switch is not None:
            await switch.stop()
        raise
    return Office(service, pbx, url, runner, switch=switch)


async def serve_with_people(service: Service) -> tuple[str, web.AppRunner]:
    """The e2e users and clients added to ``service``, and its pages served on a free
    port: (its URL, the runner to clean up)."""
    async with service.sessions() as session:
        for username, user in USERS.items():
            await auth.create_user(session, username, password=PASSWORD, **user)
        for client in CLIENTS:
            await save_client(session, client, service.config.phone.default_region)
        await session.commit()
    runner = web.AppRunner(build_app(service), access_log=logging.getLogger("e2e.access"))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return f"http://{host}:{port}", runner


async def stop_office(office: Office) -> None:
    await office.runner.cleanup()
    await office.service.close()
    await office.pbx.stop()
    if office.switch is not None:
        await office.switch.stop()


# -- fixtures and steps the browser test modules share ----------------------------------
# (a module that uses them imports them: each module gets an office and a browser.)

playwright_api = pytest.importorskip("playwright.async_api")
Page = playwright_api.Page
expect = playwright_api.expect
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
    """``await new_page(locale="en-US")``: a page in a context of its own, on ``office``
    unless ``at`` is another. The test fails if a page throws or the browser refuses
    something under the page's CSP. ``hidden``: the tab is in the background and keeps
    the notifications it shows in ``__notes``."""
    contexts = []
    problems: list[str] = []

    async def make(
        locale: str = "en-US",
        spy: bool = False,
        at: Office | None = None,
        timezone_id: str | None = None,
        hidden: bool = False,
    ) -> Page:
        context = await browser.new_context(
            viewport=VIEWPORT, locale=locale, timezone_id=timezone_id
        )
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
        if hidden:
            await page.add_init_script(HIDDEN_TAB)
        await page.goto((at or office).url)
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


# -- what tests ask the service and find on the pages -------------------------------------


async def replay(office: Office, name: str, seq: int) -> dict:
    """Play a whole lab call and return it as stored once it has ended (and its follow-ups
    are done: the directory's callback task, the recording's row)."""
    number = EXPECTED[name]["external_number"]
    async with office.service.sessions() as session:
        before = set(await session.scalars(select(CallRecord.id)))
    await office.play(fresh(name, seq))
    found: list[dict] = []

    async def stored() -> bool:
        await office.service.call_store.flush()
        async with office.service.sessions() as session:
            rows = await session.scalars(
                select(CallRecord.details).where(
                    CallRecord.id.not_in(before), CallRecord.in_progress.is_(False)
                )
            )
            found[:] = [c for c in rows if c["external_number"] == number]
        return bool(found) and not office.adapter.tracker.calls

    await eventually(stored)
    await office.service.call_store.flush()
    [call] = found
    return call


async def token_of(page: Page) -> str:
    return await page.evaluate("JSON.parse(sessionStorage.getItem('cti.session')).token")


async def api_get(office: Office, token: str, path: str, **params) -> dict:
    async with ClientSession() as http:
        headers = {"Authorization": f"Bearer {token}"}
        async with http.get(f"{office.url}{path}", params=params, headers=headers) as response:
            assert response.status == 200, await response.text()
            return await response.json()


def log_rows(page: Page):
    return page.locator("#log-rows tr.log-row")


def log_row(page: Page, call_id: str):
    return page.locator(f'#log-rows tr.log-row[data-call-id="{call_id}"]')


def task_row(page: Page, number: str):
    return page.locator(f'#worklist-rows tr.task-row[data-number="{number}"]')
