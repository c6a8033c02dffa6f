"""The lab Asterisk's faults and features the recordings cannot show (issue 15): calls
while the service is stopped, a silent link and a cut one, answered from the PBX's own CDR
(the lab's CDR rows copied into a FreePBX-shaped table in MariaDB as Asterisk writes
them); a phone's own transfer (SIP REFER); the dialplan asking the service through
cti-agi. (Run ../shared/lab/asterisk/start.sh first; .ci/run does.)"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cdr_db import CdrTable, cdr_table
from conftest import POSTGRES_URL
from fault_proxy import FaultProxy
from helpers import eventually, new_token
from lab_pbx import AMI, PREFIX, CdrPump, ami_action, call_in, lab_marks, lab_settings, phone
from sqlalchemy import select

from cti.clients.builtin import ClientIn, PhoneIn, save_client
from cti.clients.models import CallbackTask
from cti.config import Config, DatabaseConfig, ServerConfig
from cti.http.app import build_app
from cti.service import Service
from pbx_adapters.asterisk.settings import AgiConfig

pytestmark = lab_marks()


@pytest.fixture
async def cdr() -> AsyncIterator[CdrTable]:
    async for table in cdr_table("mariadb", POSTGRES_URL):
        yield table


@pytest.fixture
async def pump(cdr) -> AsyncIterator[CdrPump]:
    pump = CdrPump(cdr)
    pump.start()
    yield pump
    await pump.stop()


def lab_config(tmp_path: Path, cdr: CdrTable | None = None, **options: object) -> Config:
    if cdr is not None:
        options |= {"cdr_url": cdr.url, "cdr_table": cdr.table}
    return Config(
        server=ServerConfig(data_dir=tmp_path, port=0),
        database=DatabaseConfig(
            url=f"sqlite+aiosqlite:///{tmp_path / 'cti.db'}", auto_migrate=True
        ),
        pbx=[lab_settings(**options)],
    )


async def started(config: Config) -> Service:
    service = await Service.start(config)
    await asyncio.wait_for(service.pbx["lab"].link_up.wait(), 10)
    return service


async def calls_of(service: Service, number: str) -> list[dict]:
    from cti.callstore import CallFilter, find_calls

    await service.call_store.flush()
    async with service.sessions() as session:
        found = await find_calls(session, CallFilter(number=number), limit=10)
    return [c for c in found if not c["in_progress"]]


async def one_call(service: Service, number: str, seconds: float = 40) -> dict:
    found: list[dict] = []

    async def ended() -> bool:
        found[:] = await calls_of(service, number)
        return bool(found)

    await eventually(ended, seconds=seconds)
    [call] = found
    return call


async def open_tasks(service: Service) -> list[str]:
    async with service.sessions() as session:
        tasks = await session.scalars(select(CallbackTask).where(CallbackTask.closed_at.is_(None)))
        return sorted(t.number for t in tasks)


async def wait_for_cdr(pump: CdrPump, *numbers: str) -> None:
    """Until Asterisk has written (and the pump copied) the calls' CDR rows."""
    await eventually(lambda: set(numbers) <= {r["src"] for r in pump.copied}, seconds=30)


async def test_calls_while_the_service_is_stopped_come_back_from_the_cdr(tmp_path, pump) -> None:
    # Nothing listens to the PBX: one call nobody answers, one that 101 answers.
    missed, answered = "+78125550211", "+78125550212"
    await call_in("4952000", missed, "Пока сервис стоял", hold_seconds=3)
    await asyncio.sleep(5)
    await call_in("4952000", answered, "Answered Unseen", hold_seconds=5)
    await asyncio.sleep(1.5)
    await phone("101", "accept")
    await wait_for_cdr(pump, missed, answered)
    service = await started(lab_config(tmp_path, pump.table))
    try:
        lost = await one_call(service, missed)
        assert (lost["outcome"], lost["missed"], lost["recovered_from_cdr"]) == (
            "no_answer",
            True,
            True,
        )
        assert lost["external_name"] == "Пока сервис стоял" and lost["did"] == "4952000"
        taken = await one_call(service, answered)
        assert (taken["outcome"], taken["answered_by"], taken["missed"]) == (
            "answered",
            "101",
            False,
        )
        assert 2 <= taken["talk_seconds"] <= 6
        await eventually(lambda: _has_task(service, missed))
        assert await open_tasks(service) == [missed]
    finally:
        await service.close()
    # Started again: the same rows, nothing added twice.
    service = await started(lab_config(tmp_path, pump.table))
    try:
        await asyncio.sleep(1)
        assert len(await calls_of(service, missed)) == 1
        assert len(await calls_of(service, answered)) == 1
        assert await open_tasks(service) == [missed]
    finally:
        await service.close()


async def _has_task(service: Service, number: str) -> bool:
    return number in await open_tasks(service)


async def test_a_call_answered_while_the_link_is_silently_dead_ends_as_the_cdr_says(
    tmp_path, pump
) -> None:
    """D1 and D5 with the PBX's CDR: answered, and the talk time the CDR has, not the
    outage."""
    proxy = FaultProxy(AMI)
    await proxy.start()
    options = dict(port=proxy.port, ping_interval=1.0, ping_timeout=1.0, reconnect_max_seconds=2)
    service = await started(lab_config(tmp_path, pump.table, **options))
    try:
        lab = service.pbx["lab"]
        number = "+78125550213"
        await call_in("4952000", number, "Тишина с CDR", hold_seconds=3)
        await eventually(lambda: lab.lines().get("101") == "ringing")
        proxy.mode = "blackhole"
        await phone("101", "accept")  # answered; the caller hangs up 3 s later
        await eventually(lambda: not lab.connected, seconds=10)
        await wait_for_cdr(pump, number)
        await asyncio.sleep(2)  # the outage goes on
        proxy.mode = "pass"
        call = await one_call(service, number)
        assert (call["outcome"], call["answered_by"], call["missed"]) == ("answered", "101", False)
        assert call["recovered_from_cdr"] and not call["end_unknown"]
        assert 1 <= call["talk_seconds"] <= 4  # not the outage's length
        assert await open_tasks(service) == []
    finally:
        await service.close()
        await proxy.stop()


async def test_a_20_second_cut_with_refused_reconnects(tmp_path, pump) -> None:
    """The link is cut (FIN) and every reconnect refused for 20 s: a call that outlives the
    cut goes on as one call; one that ends during it, and one that happens entirely within
    it, come out as the CDR says."""
    proxy = FaultProxy(AMI)
    await proxy.start()
    options = dict(port=proxy.port, reconnect_max_seconds=2)
    service = await started(lab_config(tmp_path, pump.table, **options))
    try:
        lab = service.pbx["lab"]
        long, short, unseen = "+78125550214", "+78125550215", "+78125550216"
        for ext, talk in (("101", "4"), ("102", "4")):  # the lab's simulated handsets
            for name, value in ((f"MODE_{ext}", ""), (f"RING_{ext}", "1"), (f"TALK_{ext}", talk)):
                await ami_action(Action="Setvar", Variable=name, Value=value)
        await call_in("4952000", long, "Outlives the Cut", hold_seconds=28)
        await eventually(lambda: lab.lines().get("101") == "ringing")
        await phone("101", "accept")
        await eventually(lambda: lab.lines().get("101") == "in_use")  # seen answered
        await call_in("4951001", short, "Ends in the Cut", hold_seconds=8, context="inbound")
        await eventually(
            lambda: any(c.external_number == short for c in lab.tracker.active_calls())
        )
        proxy.mode = "refuse"
        proxy.cut()
        await eventually(lambda: not lab.connected)
        await call_in("4951000", unseen, "Never Seen", hold_seconds=3, context="inbound")
        await asyncio.sleep(20)
        assert not lab.connected  # refused all along
        await wait_for_cdr(pump, short, unseen)
        proxy.mode = "pass"
        await eventually(lambda: lab.connected, seconds=10)
        assert [c.external_number for c in lab.tracker.active_calls()] == [long]
        ended_in_cut = await one_call(service, short)
        assert ended_in_cut["recovered_from_cdr"] and not ended_in_cut["end_unknown"]
        assert ended_in_cut["outcome"] == "answered"
        never_seen = await one_call(service, unseen)
        assert never_seen["recovered_from_cdr"] and never_seen["outcome"] == "answered"
        outlived = await one_call(service, long, seconds=20)
        assert (outlived["outcome"], outlived["answered_by"]) == ("answered", "101")
        assert not outlived["end_unknown"] and not outlived["recovered_from_cdr"]
        assert outlived["talk_seconds"] > 20
    finally:
        await service.close()
        await proxy.stop()


async def test_a_phones_own_blind_transfer_by_sip_refer(tmp_path) -> None:
    service = await started(lab_config(tmp_path))
    try:
        lab = service.pbx["lab"]
        number = "+78125550217"
        await call_in("4952000", number, "REFER Client", hold_seconds=10)
        await eventually(lambda: lab.lines().get("101") == "ringing")
        await asyncio.sleep(0.3)
        await phone("101", "accept")
        await eventually(lambda: lab.lines().get("101") == "in_use")
        await asyncio.sleep(1)
        await phone("101", "transfer", "102")
        await eventually(lambda: lab.lines().get("102") == "ringing")
        await asyncio.sleep(0.3)
        await phone("102", "accept")
        call = await one_call(service, number)
        assert (call["first_answered_by"], call["answered_by"]) == ("101", "102")
        assert [(t["kind"], t["from"], t["to"]) for t in call["transfers"]] == [
            ("blind", "101", "102")
        ]
        assert call["outcome"] == "answered" and not call["missed"]
    finally:
        await service.close()


AGI_BIN = PREFIX / "var" / "lib" / "asterisk" / "agi-bin" / "cti-agi"


async def test_the_dialplan_asks_the_service_through_cti_agi(tmp_path, aiohttp_server) -> None:
    """4953000 runs AGI(cti-agi,lookup) and AGI(cti-agi,route), then dials the manager the
    service named: the client's manager, 102, rings, not the default 101."""
    service = await started(lab_config(tmp_path))
    server = await aiohttp_server(build_app(service))
    token = await new_token(service, "receptionist", username="pbx-agi")
    await new_token(service, "sales", extension="102")  # the manager
    number = "+78125550218"
    async with service.sessions() as session:
        await save_client(
            session,
            ClientIn("ООО Маршрут", manager_extension="102", phones=[PhoneIn(number)]),
            "RU",
        )
        await session.commit()
    settings = tmp_path / "cti-agi.toml"
    # The most the AGI may wait for the service: a loaded CI machine must not turn a slow
    # answer into the default route (this test is about the route, not its speed).
    agi = AgiConfig(service_url=f"http://127.0.0.1:{server.port}", timeout=10.0)
    settings.write_text(
        f'[agi]\nservice_url = "{agi.service_url}"\ntoken = "{token}"\ntimeout = {agi.timeout}\n',
        encoding="utf-8",
    )
    script = Path(sys.executable).with_name("cti-agi")
    AGI_BIN.parent.mkdir(parents=True, exist_ok=True)
    AGI_BIN.write_text(f'#!/bin/sh\nCTI_CONFIG="{settings}" exec "{script}" "$@"\n')
    AGI_BIN.chmod(0o755)
    try:
        lab = service.pbx["lab"]
        # Both phones registered and free (the test before may have just hung them up).
        await eventually(lambda: {lab.lines().get(e) for e in ("101", "102")} == {"idle"})
        await call_in("4953000", number, "", hold_seconds=6, context="agi-test")
        await eventually(lambda: lab.lines().get("102") == "ringing", seconds=15)
        assert lab.lines().get("101") != "ringing"
        [live] = [c for c in lab.tracker.active_calls() if c.external_number == number]
        assert [leg.extension for leg in live.legs] == ["102"]
        await eventually(lambda: not lab.tracker.active_calls(), seconds=20)
    finally:
        AGI_BIN.unlink(missing_ok=True)
        await server.close()
        await service.close()
