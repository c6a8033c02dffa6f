"""A Mango Office webhook drives a screen pop in a real Chromium: ``Appeared`` on an
extension pops the caller's client and responsible manager, ``Disconnected`` of every
party closes it."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest_asyncio
from aiohttp import web
from e2e_helpers import (
    BROWSER_TESTS,
    MANAGER_NAME,
    browser,
    card,
    expect,
    new_page,
    serve_with_people,
    shot,
    sign_in,
)

from cti.config import Config, DatabaseConfig, ServerConfig
from cti.http.app import build_app
from cti.service import Service
from pbx_adapters.cloud.mango.settings import MangoSettings
from pbx_adapters.cloud.mango.standin import MangoStandIn, inbound

pytestmark = BROWSER_TESTS
KEY, SALT = "vpbx-key-e2e", "vpbx-salt-e2e"


@dataclass
class MangoOffice:
    service: Service
    url: str
    mango: MangoStandIn


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def office(tmp_path_factory) -> AsyncIterator[MangoOffice]:
    data_dir = tmp_path_factory.mktemp("mango")
    mango = MangoStandIn(KEY, SALT)
    await mango.start()
    config = Config(
        server=ServerConfig(data_dir=data_dir, host="127.0.0.1", port=0),
        database=DatabaseConfig(
            url=f"sqlite+aiosqlite:///{data_dir / 'e2e.db'}", auto_migrate=True
        ),
        pbx=[
            MangoSettings(name="mango", type="mango", api_url=mango.url, api_key=KEY, api_salt=SALT)
        ],
    )
    service = await Service.start(config)
    url, runner = await serve_with_people(service)
    mango.webhook_url = f"{url}/pbx/mango/"
    yield MangoOffice(service, url, mango)
    await runner.cleanup()
    await service.close()
    await mango.stop()


async def test_a_mango_call_pops_the_client_and_manager_and_closes(new_page, office) -> None:
    page = await new_page()
    await sign_in(page, "anna")
    events = inbound("web1", "78125550104", ["101"], int(time.time()), answered_by="101")
    appeared = [e for e in events if e[1].get("call_state") == "Appeared"]
    await office.mango.play(appeared)
    pop = card(page, "mango:web1")
    await expect(pop.locator(".badge")).to_have_text("Ringing: 101")
    await expect(pop.locator(".caller")).to_contain_text("+7 812 555 01 04")
    await expect(pop.locator(".client-name")).to_have_text("ООО «Ромашка»")
    await expect(pop.locator(".manager-name")).to_have_text(MANAGER_NAME)
    await shot(page, "mango-pop")
    await office.mango.play([e for e in events if e[1].get("call_state") == "Connected"])
    await expect(pop.locator(".badge")).to_have_text("Answered by you")
    await office.mango.play([e for e in events if e[1].get("call_state") == "Disconnected"])
    await expect(pop).to_have_count(0)
