"""The scripted PBX drives a screen pop in a real Chromium: the desk knows no PBX, only
the core's events, so a second PBX interface pops the same card as Asterisk does."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
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

from cti.config import load_config
from cti.http.app import build_app
from cti.service import Service
from pbx_adapters.scripted.settings import Step

pytestmark = BROWSER_TESTS


@dataclass
class ScriptedOffice:
    service: Service
    url: str
    runner: web.AppRunner

    def play(self, **step: str) -> None:
        self.service.pbx["fake"].play(Step(**step))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def office(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ScriptedOffice]:
    data_dir = tmp_path_factory.mktemp("scripted")
    path = data_dir / "cti.toml"
    path.write_text(
        f'[server]\ndata_dir = "{data_dir}"\nport = 0\n[database]\nauto_migrate = true\n'
        '[[pbx]]\nname = "fake"\ntype = "scripted"\n'
    )
    service = await Service.start(load_config(path, environ={}))
    url, runner = await serve_with_people(service)
    yield ScriptedOffice(service, url, runner)
    await runner.cleanup()
    await service.close()


async def test_a_scripted_call_pops_the_client_and_its_manager(new_page, office) -> None:
    page = await new_page()
    await sign_in(page, "anna")
    office.play(event="ring", call="r1", number="8 812 555-01-04", extension="101")
    pop = card(page, "fake:r1")
    await expect(pop.locator(".badge")).to_have_text("Ringing: 101")
    await expect(pop.locator(".caller")).to_contain_text("+7 812 555 01 04")
    await expect(pop.locator(".client-name")).to_have_text("ООО «Ромашка»")
    await expect(pop.locator(".manager-name")).to_have_text(MANAGER_NAME)
    await shot(page, "scripted-pbx-pop")
    office.play(event="answer", call="r1", extension="101")
    await expect(pop.locator(".badge")).to_have_text("Answered by you")
    office.play(event="end", call="r1")
    await expect(pop).to_have_count(0)
